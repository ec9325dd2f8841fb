"""Leaky integrate-and-fire over all T steps as one autograd Function (training path).

snnTorch's ``Leaky`` advances one step per call, and autograd records ~6 tensors per step
and layer; at T=100 that graph, its allocations and per-op dispatch cost more than the
convolutions on a 2-core CPU. Here the whole recurrence of a layer is one Function whose
forward and backward are single-pass Numba kernels, parallel over neurons and sequential
in time (each neuron's state stays in registers; no per-step tensors are allocated).

Forward (snnTorch 1.0 ``Leaky``: subtract reset, reset delayed by one step and detached)::

    R[t] = S[t-1] = (U[t-1] > theta)
    U[t] = (beta * U[t-1] + I[t]) - R[t] * theta
    S[t] = (U[t] > theta)

The float operations are done in snnTorch's order and precision, so spikes and membranes
are bit-identical to the per-step module on the same currents (tested).

Backward (fast-sigmoid surrogate of slope k; the reset is detached as in snnTorch)::

    dL/dU[t] = dL/dS[t] / (1 + k |U[t] - theta|)^2 + beta * dL/dU[t+1]
    dL/dI[t] = dL/dU[t]

A layer whose current is the same at every step (the first layer of a static image) takes
I of shape (B, ...) and returns dL/dI summed over t, so the (T, B, ...) current is never built.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

_CHUNK = 2048  # neurons per parallel task: a chunk's state stays in L1


@numba.njit(parallel=True, cache=True, nogil=True)
def _forward_kernel(cur, static, beta, thr, spk, mem):  # pragma: no cover - compiled
    steps, n = spk.shape
    for c in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        u = np.zeros(hi - lo, dtype=spk.dtype)
        s = np.zeros(hi - lo, dtype=spk.dtype)
        for t in range(steps):
            row = 0 if static else t
            for j in range(hi - lo):
                v = beta * u[j]
                v = v + cur[row, lo + j]
                v = v - s[j] * thr
                u[j] = v
                mem[t, lo + j] = v
                s[j] = v > thr
                spk[t, lo + j] = s[j]


@numba.njit(parallel=True, cache=True, nogil=True)
def _backward_kernel(grad_spk, mem, beta, thr, slope, static, grad_cur):  # pragma: no cover - compiled
    steps, n = mem.shape
    for c in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        g = np.zeros(hi - lo, dtype=mem.dtype)
        acc = np.zeros(hi - lo, dtype=mem.dtype)
        for t in range(steps - 1, -1, -1):
            for j in range(hi - lo):
                d = slope * abs(mem[t, lo + j] - thr) + 1
                gj = beta * g[j] + grad_spk[t, lo + j] / (d * d)
                g[j] = gj
                acc[j] += gj
                if not static:
                    grad_cur[t, lo + j] = gj
        if static:
            for j in range(hi - lo):
                grad_cur[0, lo + j] = acc[j]


class _LIFSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, steps: int, static: bool, beta: torch.Tensor, threshold: torch.Tensor, slope: float):  # type: ignore[override]
        dtype = current.dtype
        cur = current.detach().contiguous()
        rows = 1 if static else steps
        cur2d = cur.reshape(rows, -1)
        spk = torch.empty((steps, cur2d.shape[1]), dtype=dtype)
        mem = torch.empty_like(spk)
        np_dtype = cur2d.numpy().dtype.type
        b, th = np_dtype(beta.clamp(0, 1).item()), np_dtype(threshold.item())
        _forward_kernel(cur2d.numpy(), static, b, th, spk.numpy(), mem.numpy())
        ctx.save_for_backward(mem)
        ctx.params = (static, b, th, np_dtype(slope), tuple(current.shape))
        ctx.set_materialize_grads(False)  # no (T, B, ...) zero tensor for the unused mem grad
        out_shape = (steps, *(current.shape if static else current.shape[1:]))
        mem = mem.view(out_shape)
        ctx.mark_non_differentiable(mem)
        return spk.view(out_shape), mem

    @staticmethod
    def backward(ctx, grad_spk, _grad_mem):  # type: ignore[override]
        (mem,) = ctx.saved_tensors
        if grad_spk is None:
            return None, None, None, None, None, None
        return surrogate_backward(grad_spk, mem, *ctx.params), None, None, None, None, None


def surrogate_backward(
    grad_spk: torch.Tensor,
    mem: torch.Tensor,
    static: bool,
    beta: np.floating,
    threshold: np.floating,
    slope: np.floating,
    in_shape: tuple[int, ...],
) -> torch.Tensor:
    """dL/dI of the module docstring from dL/dS and the saved membranes ``mem`` (T, n), shaped ``in_shape``.

    ``beta``, ``threshold`` and ``slope`` are NumPy scalars of ``mem``'s dtype.
    """
    grad = grad_spk.contiguous().reshape(mem.shape).to(mem.dtype)
    grad_cur = torch.empty((1 if static else mem.shape[0], mem.shape[1]), dtype=mem.dtype)
    _backward_kernel(grad.numpy(), mem.numpy(), beta, threshold, slope, static, grad_cur.numpy())
    return grad_cur.view(in_shape)


def lif_sequence(
    current: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, slope: float, steps: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the LIF over all steps; return (spikes, membranes), both (T, B, ...).

    ``current`` is (T, B, ...), or (B, ...) with ``steps`` given when the same current
    enters at every step. See the module docstring for the equations; gradients flow to
    ``current`` only.
    """
    static = steps is not None
    n_steps = int(steps) if static else current.shape[0]
    return _LIFSequence.apply(current, n_steps, static, beta, threshold, float(slope))


# --- dropout ---------------------------------------------------------------------------------
# torch's dropout spends ~16 ns per element drawing Bernoulli samples (77-130 ms for the
# (T, B, 1024) dense input at T=100, B=128, as much as a whole LIF layer). A counter-based
# hash (splitmix64 of seed + index) gives independent uniform bits per element at ~1 ns,
# the same for any thread count, and the backward pass regenerates the mask instead of
# storing it. The seed is drawn from torch's generator, so torch.manual_seed and a resumed
# run's saved RNG state reproduce the masks.


@numba.njit(inline="always")
def _keep(seed, i, keep_below):  # pragma: no cover - compiled
    z = numba.uint64(seed) + numba.uint64(i) * numba.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> numba.uint64(30))) * numba.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> numba.uint64(27))) * numba.uint64(0x94D049BB133111EB)
    z = z ^ (z >> numba.uint64(31))
    return (z >> numba.uint64(40)) < numba.uint64(keep_below)  # top 24 bits vs (1-p) 2^24


@numba.njit(parallel=True, cache=True, nogil=True)
def _dropout_kernel(x, out, seed, keep_below, scale):  # pragma: no cover - compiled
    n = x.shape[0]
    for c in numba.prange((n + 65535) // 65536):
        for i in range(c * 65536, min(n, (c + 1) * 65536)):
            out[i] = x[i] * scale if _keep(seed, i, keep_below) else 0


class _HashDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p: float):  # type: ignore[override]
        seed = int(torch.randint(0, 2**62, (1,)).item())
        keep_below = int(round((1.0 - p) * 2**24))
        scale = np.float32(1.0 / (1.0 - p)) if x.dtype == torch.float32 else 1.0 / (1.0 - p)
        flat = x.detach().contiguous().reshape(-1)
        out = torch.empty_like(flat)
        _dropout_kernel(flat.numpy(), out.numpy(), np.uint64(seed), np.uint64(keep_below), scale)
        ctx.params = (seed, keep_below, scale)
        return out.view(x.shape)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        seed, keep_below, scale = ctx.params
        flat = grad.contiguous().reshape(-1)
        out = torch.empty_like(flat)
        _dropout_kernel(flat.numpy(), out.numpy(), np.uint64(seed), np.uint64(keep_below), scale)
        return out.view(grad.shape), None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout (zero with probability ``p``, scale the rest by 1/(1-p)); identity in eval.

    ``p`` is realised to 2^-24 (the mask compares 24 random bits).
    """
    if not training or p == 0.0:
        return x
    return _HashDropout.apply(x, float(p))
