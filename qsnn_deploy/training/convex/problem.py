r"""The convex readout problem over the feature dictionary, its solvers and its strength path.

With Phi (N, P) the features (one column per feature neuron, docs/convex.md), Y the labels and
Z = Phi W^T + 1 b^T the class scores (W is (C, P), b is (C,), unpenalised)::

    minimise  loss(Z, Y) + lambda * R(W)
    hinge     (1/N) sum_{i,c} max(0, 1 - Y_ic Z_ic)            Y_ic = +1 if y_i = c else -1 (one-vs-rest)
    sqhinge   (1/N) sum_{i,c} max(0, 1 - Y_ic Z_ic)^2          (squared hinge: smooth, so FISTA takes it)
    softmax   (1/N) sum_i logsumexp(Z_i) - Z_{i, y_i}
    squared   (1/2N) sum_{i,c} (Z_ic - Y_ic)^2
    R(W)      sum_p ||W[:, p]||_2  ("group": one group per feature neuron)   or   sum |W| ("l1")

Every choice is convex, so the solution is the global optimum of the readout given the
features; a group driven to zero is a feature neuron the deployed graph does not need.

Solvers: :func:`solve_cvxpy` (cvxpy + CLARABEL, interior point; small problems; reports the
solver's duality gap) and :func:`solve_fista` (FISTA with backtracking in torch, smooth losses;
reports the optimality residual, the norm of the proximal-gradient map). Both are needed:
CLARABEL's cost grows with N * P (a seq-fmnist problem is 50,000 x 2,048) while FISTA cannot
take the non-smooth hinge. :func:`fit_path` solves a path of strengths and picks one on a
validation split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qsnn_deploy.errors import QsnnError

LOSSES = ("hinge", "sqhinge", "softmax", "squared")
PENALTIES = ("group", "l1")
SOLVERS = ("auto", "cvxpy", "fista")
#: "auto" uses cvxpy when N * P * C is at most this, FISTA otherwise (hinge: always cvxpy)
CVXPY_MAX_SIZE = 400_000


@dataclass
class Readout:
    """A solved readout: weights (C, P), bias (C,), and how well the solver solved it."""

    weight: np.ndarray
    bias: np.ndarray
    lam: float
    objective: float
    solver: str
    certificate: str  # "duality gap" (cvxpy) or "optimality residual" (FISTA)
    certificate_value: float
    iterations: int
    seconds: float

    def scores(self, phi: np.ndarray) -> np.ndarray:
        return phi @ self.weight.T + self.bias

    def active(self, tol: float = 1e-6) -> np.ndarray:
        """(P,) bool: feature neurons whose readout weights exceed ``tol`` times max(1, the largest).

        An interior-point solution leaves ~1e-9 where the exact optimum has 0; the floor of 1
        (scores are O(1): the targets are +-1) keeps such residue from counting as active.
        """
        norms = np.abs(self.weight).max(axis=0)
        return norms > tol * max(float(norms.max()), 1.0)


def _targets(y: np.ndarray, classes: int) -> np.ndarray:
    """(N, C) +1 for the label, -1 elsewhere."""
    out = -np.ones((len(y), classes))
    out[np.arange(len(y)), y] = 1.0
    return out


def _check(phi: np.ndarray, y: np.ndarray, classes: int, loss: str, penalty: str, lam: float) -> None:
    if loss not in LOSSES:
        raise QsnnError(f"loss must be one of {LOSSES}, got {loss!r}")
    if penalty not in PENALTIES:
        raise QsnnError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
    if phi.ndim != 2 or len(phi) != len(y) or len(y) < 1:
        raise QsnnError(f"features must be (N, P) with N = len(labels) >= 1, got {phi.shape} and {len(y)} labels")
    if not lam >= 0:
        raise QsnnError(f"the regularisation strength must be >= 0, got {lam}")
    if y.min() < 0 or y.max() >= classes:
        raise QsnnError(f"labels must lie in 0..{classes - 1}")


def solve_cvxpy(phi: np.ndarray, y: np.ndarray, classes: int, *, loss: str, penalty: str, lam: float) -> Readout:
    """Solve the problem exactly with cvxpy and CLARABEL; the certificate is CLARABEL's primal-dual gap."""
    import cvxpy as cp

    _check(phi, y, classes, loss, penalty, lam)
    n, p = phi.shape
    w, b = cp.Variable((p, classes)), cp.Variable(classes)
    z = phi @ w + np.ones((n, 1)) @ cp.reshape(b, (1, classes), order="C")
    targets = _targets(y, classes)
    if loss == "hinge":
        data_term = cp.sum(cp.pos(1 - cp.multiply(targets, z))) / n
    elif loss == "sqhinge":
        data_term = cp.sum(cp.square(cp.pos(1 - cp.multiply(targets, z)))) / n
    elif loss == "squared":
        data_term = cp.sum_squares(z - targets) / (2 * n)
    else:
        data_term = cp.sum(cp.log_sum_exp(z, axis=1) - cp.sum(cp.multiply((targets > 0).astype(float), z), axis=1)) / n
    reg = cp.sum(cp.norm(w, 2, axis=1)) if penalty == "group" else cp.sum(cp.abs(w))
    problem = cp.Problem(cp.Minimize(data_term + lam * reg))
    start = time.perf_counter()
    # solve through the problem data so CLARABEL's own solution (with its dual objective) is kept
    data, chain, inverse = problem.get_problem_data("CLARABEL", solver_opts={})
    raw = chain.solve_via_data(problem, data, False, False, {})
    problem.unpack_results(raw, chain, inverse)
    if problem.status not in ("optimal", "optimal_inaccurate") or w.value is None:
        raise QsnnError(f"cvxpy/CLARABEL could not solve the readout problem: status {problem.status}")
    return Readout(
        weight=np.asarray(w.value).T.copy(),
        bias=np.asarray(b.value).copy(),
        lam=lam,
        objective=float(problem.value),
        solver="cvxpy-clarabel",
        certificate="duality gap",
        certificate_value=float(abs(raw.obj_val - raw.obj_val_dual)),
        iterations=int(raw.iterations),
        seconds=time.perf_counter() - start,
    )


def solve(
    phi: np.ndarray,
    y: np.ndarray,
    classes: int,
    *,
    loss: str,
    penalty: str,
    lam: float,
    solver: str = "auto",
    init: Readout | None = None,
    max_iter: int = 1000,
) -> Readout:
    """Solve with ``solver`` (``auto``: cvxpy for hinge or small problems, FISTA otherwise; ``max_iter``: FISTA's)."""
    if solver not in SOLVERS:
        raise QsnnError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "auto":
        solver = "cvxpy" if loss == "hinge" or phi.size * classes <= CVXPY_MAX_SIZE else "fista"
    if solver == "cvxpy":
        return solve_cvxpy(phi, y, classes, loss=loss, penalty=penalty, lam=lam)
    from qsnn_deploy.training.convex.fista import solve_fista

    return solve_fista(phi, y, classes, loss=loss, penalty=penalty, lam=lam, init=init, max_iter=max_iter)


def lambda_max(phi: np.ndarray, y: np.ndarray, classes: int, penalty: str) -> float:
    """Smallest strength at which W = 0 is optimal (with the bias at its W = 0 optimum, squared loss).

    The gradient of the data term at W = 0 is -(1/N) (Y - mean Y)^T Phi; its largest group norm
    (group) or entry (l1) is the strength where the first neuron enters.
    """
    targets = _targets(y, classes)
    grad = (targets - targets.mean(axis=0)).T @ phi / len(y)
    return float(np.linalg.norm(grad, axis=0).max() if penalty == "group" else np.abs(grad).max())


@dataclass
class PathPoint:
    lam: float
    val_acc: float
    active: int
    certificate_value: float
    seconds: float


@dataclass
class PathResult:
    """The chosen readout and every strength tried (for the report)."""

    best: Readout
    points: list[PathPoint] = field(default_factory=list)

    def table(self) -> list[dict[str, Any]]:
        return [vars(p) for p in self.points]


def fit_path(
    phi: np.ndarray,
    y: np.ndarray,
    phi_val: np.ndarray,
    y_val: np.ndarray,
    classes: int,
    *,
    loss: str = "hinge",
    penalty: str = "group",
    strengths: int = 6,
    ratio: float = 1e-3,
    solver: str = "auto",
    evaluate: Any = None,
    max_iter: int = 1000,
) -> PathResult:
    """Solve for ``strengths`` values from lambda_max down to ratio * lambda_max; pick by validation.

    ``evaluate(readout, phi_val, y_val) -> accuracy`` scores a candidate (default: float argmax);
    the methods pass the quantized readout's accuracy, so the pick is what will be deployed. Ties
    go to the larger strength (fewer neurons); a readout with no neuron left is never picked.
    """
    if strengths < 1 or not 0 < ratio < 1:
        raise QsnnError(f"need strengths >= 1 and 0 < ratio < 1, got {strengths} and {ratio}")
    evaluate = evaluate or (lambda r, f, t: float((np.argmax(r.scores(f), axis=1) == t).mean()))
    top = lambda_max(phi, y, classes, penalty)
    grid = [top * ratio ** (i / strengths) for i in range(1, strengths + 1)]  # just below lambda_max .. ratio * lambda_max
    best: tuple[float, Readout] | None = None
    points, init = [], None
    for lam in grid:
        readout = solve(phi, y, classes, loss=loss, penalty=penalty, lam=lam, solver=solver, init=init, max_iter=max_iter)
        init = readout
        acc = evaluate(readout, phi_val, y_val)
        points.append(PathPoint(lam, acc, int(readout.active().sum()), readout.certificate_value, readout.seconds))
        if readout.active().any() and (best is None or acc > best[0] + 1e-12):  # an empty readout cannot be deployed
            best = (acc, readout)
    if best is None:
        raise QsnnError("every strength on the path pruned all feature neurons; lower --strengths' range or widen the stacks")
    return PathResult(best[1], points)


def quantize(readout: Readout, bits: int, active: np.ndarray | None = None, bias_steps: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Integer readout (W, b) with one scale: the largest |weight| or |bias| becomes 2^(bits-1) - 1.

    Weights of inactive neurons are set to exactly 0 (they are pruned from the graph). The
    bias returned is per step: the deployed score adds it ``bias_steps`` times (StackConfig.bias_steps).
    """
    w = readout.weight.copy()
    if active is not None:
        w[:, ~active] = 0.0
    top = max(float(np.abs(w).max()), float(np.abs(readout.bias).max()), 1e-30)
    scale = (2 ** (bits - 1) - 1) / top
    return np.rint(w * scale).astype(np.int64), np.rint(readout.bias * scale / bias_steps).astype(np.int64)


def integer_predictions(phi: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """argmax of the integer scores, lowest index on ties (the simulator's rule)."""
    return np.argmax(phi.astype(np.int64) @ weight.T + bias, axis=1)


__all__ = [
    "LOSSES",
    "PENALTIES",
    "SOLVERS",
    "PathResult",
    "Readout",
    "fit_path",
    "integer_predictions",
    "lambda_max",
    "quantize",
    "solve",
    "solve_cvxpy",
]
