r"""FISTA with backtracking (Beck and Teboulle 2009) for the smooth readout losses, in torch.

Minimises f(W, b) + lambda * R(W) with f the softmax, squared-hinge or squared loss of
:mod:`.problem` (smooth, gradient Lipschitz) and R the group or l1 norm (proximable: group
soft-thresholding / soft-thresholding; the bias is not penalised)::

    X_k     = prox_{lambda / L}(Y_k - grad f(Y_k) / L)      L doubled until
              f(X_k) <= f(Y_k) + <grad f(Y_k), X_k - Y_k> + L/2 ||X_k - Y_k||^2
    t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2,   Y_{k+1} = X_k + (t_k - 1) / t_{k+1} (X_k - X_{k-1})

with the gradient-based adaptive restart of O'Donoghue and Candes (2015): t_k is reset to 1 when
<Y_k - X_k, X_k - X_{k-1}> > 0 (the momentum points uphill), which keeps the same fixed points and
cuts the iterations on ill-conditioned features (spike counts of correlated neurons) severalfold.

The optimality residual is ||G(X)|| with G(X) = L (X - prox_{lambda/L}(X - grad f(X) / L)) the
proximal-gradient map: it is 0 exactly at a minimiser. We stop when it falls below ``tol``.
The hinge loss is not smooth; use cvxpy for it (:func:`.problem.solve_cvxpy`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from qsnn_deploy.errors import QsnnError


def _loss_and_dz(z, onehot, loss: str):
    """The smooth loss and its gradient with respect to the scores Z (both analytic)."""
    import torch

    n = z.shape[0]
    if loss == "softmax":
        lse = torch.logsumexp(z, dim=1)
        value = (lse - (z * onehot).sum(dim=1)).sum() / n
        return float(value), (torch.exp(z - lse[:, None]) - onehot) / n
    if loss == "sqhinge":
        signs = 2 * onehot - 1
        margin = (1 - signs * z).clamp_min(0)
        return float((margin**2).sum() / n), -2 * signs * margin / n
    diff = z - (2 * onehot - 1)
    return float((diff**2).sum() / (2 * n)), diff / n


def _prox(w, step: float, penalty: str):
    import torch

    if penalty == "l1":
        return torch.sign(w) * (w.abs() - step).clamp_min(0)
    norms = w.norm(dim=0, keepdim=True)  # one group per feature neuron: a column of (C, P)
    return w * (1 - step / norms.clamp_min(1e-30)).clamp_min(0)


def solve_fista(
    phi: np.ndarray,
    y: np.ndarray,
    classes: int,
    *,
    loss: str,
    penalty: str,
    lam: float,
    init: Any = None,
    max_iter: int = 1000,
    tol: float = 1e-5,
):
    """Solve the readout problem (softmax or squared loss) with FISTA; see the module docstring."""
    import torch

    from qsnn_deploy.training.convex.problem import _check

    _check(phi, y, classes, loss, penalty, lam)
    if loss == "hinge":
        raise QsnnError("FISTA needs a smooth loss (softmax, sqhinge or squared); solve the hinge loss with --solver cvxpy")
    threads = torch.get_num_threads()
    # the products here are (N, P) x (P, C) with C small: on a busy 2-core machine one thread was
    # 18x faster than two (thread hand-offs dominate such thin products)
    torch.set_num_threads(1)
    try:
        return _fista(phi, y, classes, loss, penalty, lam, init, max_iter, tol)
    finally:
        torch.set_num_threads(threads)


def _fista(phi, y, classes, loss, penalty, lam, init, max_iter, tol):
    import torch

    from qsnn_deploy.training.convex.problem import Readout

    start = time.perf_counter()
    x = torch.from_numpy(np.asarray(phi, np.float64))
    onehot = torch.nn.functional.one_hot(torch.from_numpy(np.asarray(y)), classes).double()
    p = x.shape[1]
    w = torch.from_numpy(init.weight.copy()) if init is not None else torch.zeros(classes, p, dtype=torch.float64)
    b = torch.from_numpy(init.bias.copy()) if init is not None else torch.zeros(classes, dtype=torch.float64)

    def value_grad(wv, bv):
        f, dz = _loss_and_dz(x @ wv.T + bv, onehot, loss)
        return f, dz.T @ x, dz.sum(dim=0)

    def residual(wv, bv, step):
        _, gw, gb = value_grad(wv, bv)
        pw = _prox(wv - step * gw, step * lam, penalty)
        return float(torch.sqrt(((wv - pw) ** 2).sum() + ((step * gb) ** 2).sum())) / step

    lip, t = 1.0, 1.0
    yw, yb, pw, pb = w.clone(), b.clone(), w.clone(), b.clone()
    res, it = float("inf"), 0
    for it in range(1, max_iter + 1):
        f_y, gw, gb = value_grad(yw, yb)
        while True:
            nw = _prox(yw - gw / lip, lam / lip, penalty)
            nb = yb - gb / lip
            dw, db = nw - yw, nb - yb
            f_n = _loss_and_dz(x @ nw.T + nb, onehot, loss)[0]
            if f_n <= f_y + float((gw * dw).sum() + (gb * db).sum()) + lip / 2 * float((dw**2).sum() + (db**2).sum()) + 1e-12:
                break
            lip *= 2.0
        # adaptive restart (O'Donoghue and Candes 2015): momentum that points uphill is dropped
        if float(((yw - nw) * (nw - pw)).sum() + ((yb - nb) * (nb - pb)).sum()) > 0:
            t = 1.0
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        yw, yb = nw + (t - 1) / t_next * (nw - pw), nb + (t - 1) / t_next * (nb - pb)
        pw, pb, t = nw, nb, t_next
        if it % 25 == 0 or it == max_iter:
            res = residual(pw, pb, 1.0 / lip)
            if res < tol:
                break
    reg = float(pw.norm(dim=0).sum() if penalty == "group" else pw.abs().sum())
    objective = _loss_and_dz(x @ pw.T + pb, onehot, loss)[0] + lam * reg
    return Readout(
        weight=pw.numpy().copy(),
        bias=pb.numpy().copy(),
        lam=lam,
        objective=objective,
        solver="fista",
        certificate="optimality residual",
        certificate_value=res,
        iterations=it,
        seconds=time.perf_counter() - start,
    )


__all__ = ["solve_fista"]
