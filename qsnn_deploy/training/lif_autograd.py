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

Two things keep memory traffic down, which is what these kernels are bound by:

- The backward pass recomputes U from the saved current, chunk by chunk in cache, instead
  of saving the (T, n) membranes: the same float operations, so the same U bit for bit. For
  the static first layer the saved current is T times smaller than U.
- The kernels work on the tensors' memory order, whatever it is (LIF is elementwise over
  neurons): spikes come out in the current's layout, and the gradient is read in its own.
  A channels-last current gives channels-last spikes, which is what the next conv wants,
  and the conv's channels-last input gradient is read without a copy.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

_CHUNK = 2048  # neurons per parallel task in the forward: a chunk's state stays in L1
_BACKWARD_CHUNK = 256  # neurons per task in the backward: its recomputed (T, chunk) U stays in L2


# The kernels index rows as slices, keep branches out of the inner loops and call no helper
# functions: that is what lets LLVM vectorise them (4x faster than indexing 2-D arrays
# element by element, 2x faster than the same loops in an inlined helper; measured).


@numba.njit(parallel=True, cache=True, nogil=True)
def _forward_kernel(cur, static, beta, thr, spk, mem, keep_mem):  # pragma: no cover - compiled
    """S (and U if ``keep_mem``), (T, n), from the current ``cur``: (1, n) if ``static``, else (T, n)."""
    steps, n = spk.shape
    for c in numba.prange((n + _CHUNK - 1) // _CHUNK):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        u = np.zeros(hi - lo, dtype=spk.dtype)
        s = np.zeros(hi - lo, dtype=spk.dtype)
        for t in range(steps):
            row = cur[0 if static else t, lo:hi]
            for j in range(hi - lo):  # U = (beta U + I) - S theta, in snnTorch's order; S = U > theta
                v = beta * u[j]
                v = v + row[j]
                v = v - s[j] * thr
                u[j] = v
                s[j] = v > thr
            spk[t, lo:hi] = s
            if keep_mem:
                mem[t, lo:hi] = u


@numba.njit(parallel=True, cache=True, nogil=True)
def _backward_kernel(grad_spk, source, recompute, beta, thr, slope, static, grad_cur):  # pragma: no cover - compiled
    """dL/dI from dL/dS; U is ``source`` itself (T, n), or recomputed from it as the current if ``recompute``.

    The surrogate loop must stay in this function: called as a function (inlined or not),
    Numba no longer knows U is a private buffer and the loop runs 2x slower (measured).
    """
    steps, n = grad_spk.shape
    for c in numba.prange((n + _BACKWARD_CHUNK - 1) // _BACKWARD_CHUNK):
        lo = c * _BACKWARD_CHUNK
        hi = min(n, lo + _BACKWARD_CHUNK)
        mem = np.empty((steps, hi - lo), dtype=grad_cur.dtype)
        if recompute:
            u = np.zeros(hi - lo, dtype=grad_cur.dtype)
            s = np.zeros(hi - lo, dtype=grad_cur.dtype)
            for t in range(steps):  # _forward_kernel's recurrence, the same operations: the same U bit for bit
                row = source[0 if static else t, lo:hi]
                u_t = mem[t]
                for j in range(hi - lo):
                    v = beta * u[j]
                    v = v + row[j]
                    v = v - s[j] * thr
                    u[j] = v
                    u_t[j] = v
                    s[j] = v > thr
        else:
            mem[:, :] = source[:, lo:hi]
        g = np.zeros(hi - lo, dtype=grad_cur.dtype)
        acc = np.zeros(hi - lo, dtype=grad_cur.dtype)
        for t in range(steps - 1, -1, -1):
            u_t = mem[t]
            gs = grad_spk[t, lo:hi]
            if static:  # two copies of the loop: a row chosen at run time stops vectorisation
                for j in range(hi - lo):
                    d = slope * abs(u_t[j] - thr) + 1
                    gj = beta * g[j] + gs[j] / (d * d)
                    g[j] = gj
                    acc[j] += gj
            else:
                out = grad_cur[t, lo:hi]
                for j in range(hi - lo):
                    d = slope * abs(u_t[j] - thr) + 1
                    gj = beta * g[j] + gs[j] / (d * d)
                    g[j] = gj
                    out[j] = gj
        if static:
            grad_cur[0, lo:hi] = acc


def _memory_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """The permutation of ``t``'s dims from outermost to innermost in memory, if ``t`` is dense in it."""
    order = tuple(sorted(range(t.dim()), key=lambda d: -t.stride(d)))  # stable: size-1 ties keep their place
    return order if t.permute(order).is_contiguous() else None


def _inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(order)
    for k, d in enumerate(order):
        inv[d] = k
    return tuple(inv)


class _LIFSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, steps: int, static: bool, beta: torch.Tensor, threshold: torch.Tensor, slope: float, keep_mem: bool):  # type: ignore[override]
        dtype = current.dtype
        cur = current.detach()
        order = _memory_order(cur)
        if order is None or (not static and order[0] != 0):  # time must be outermost
            cur = cur.contiguous()
            order = tuple(range(cur.dim()))
        physical = cur.permute(order)  # dense, in memory order
        cur2d = physical.reshape(1 if static else steps, -1)
        spk = torch.empty((steps, cur2d.shape[1]), dtype=dtype)
        mem = torch.empty_like(spk) if keep_mem else torch.empty((1, 1), dtype=dtype)
        np_dtype = cur2d.numpy().dtype.type
        b, th = np_dtype(beta.clamp(0, 1).item()), np_dtype(threshold.item())
        _forward_kernel(cur2d.numpy(), static, b, th, spk.numpy(), mem.numpy(), keep_mem)
        ctx.save_for_backward(cur2d)
        # the outputs' memory order, (T, *per step) -> physical; and back to the current's shape
        out_order = (0, *(d + 1 for d in order)) if static else order
        ctx.params = (static, b, th, np_dtype(slope), out_order, tuple(physical.shape), _inverse(order))
        ctx.set_materialize_grads(False)  # no (T, B, ...) zero tensor for the unused mem grad
        out_physical = (steps, *physical.shape) if static else tuple(physical.shape)
        logical = _inverse(out_order)
        spk = spk.view(out_physical).permute(logical)
        if not keep_mem:
            return spk, None
        mem = mem.view(out_physical).permute(logical)
        ctx.mark_non_differentiable(mem)
        return spk, mem

    @staticmethod
    def backward(ctx, grad_spk, _grad_mem):  # type: ignore[override]
        (cur2d,) = ctx.saved_tensors
        if grad_spk is None:
            return (None,) * 7
        static, beta, thr, slope, out_order, physical_shape, to_current = ctx.params
        grad = grad_spk.permute(out_order).contiguous().reshape(grad_spk.shape[0], -1).to(cur2d.dtype)
        grad_cur = torch.empty((1 if static else grad.shape[0], grad.shape[1]), dtype=cur2d.dtype)
        _backward_kernel(grad.numpy(), cur2d.numpy(), True, beta, thr, slope, static, grad_cur.numpy())
        return grad_cur.view(physical_shape).permute(to_current), None, None, None, None, None, None


def surrogate_backward(
    grad_spk: torch.Tensor,
    mem: torch.Tensor,
    static: bool,
    beta: np.floating,
    threshold: np.floating,
    slope: np.floating,
    in_shape: tuple[int, ...],
) -> torch.Tensor:
    """dL/dI of the module docstring from dL/dS and given membranes ``mem`` (T, n), shaped ``in_shape``.

    For a neuron whose U is not the float recurrence's (:mod:`qsnn_deploy.training.finetune`).
    ``beta``, ``threshold`` and ``slope`` are NumPy scalars of ``mem``'s dtype.
    """
    grad = grad_spk.contiguous().reshape(mem.shape).to(mem.dtype)
    grad_cur = torch.empty((1 if static else mem.shape[0], mem.shape[1]), dtype=mem.dtype)
    _backward_kernel(grad.numpy(), mem.numpy(), False, beta, threshold, slope, static, grad_cur.numpy())
    return grad_cur.view(in_shape)


def lif_sequence(
    current: torch.Tensor,
    beta: torch.Tensor,
    threshold: torch.Tensor,
    slope: float,
    steps: int | None = None,
    membranes: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the LIF over all steps; return (spikes, membranes), both (T, B, ...).

    ``current`` is (T, B, ...), or (B, ...) with ``steps`` given when the same current
    enters at every step. See the module docstring for the equations; gradients flow to
    ``current`` only. The spikes have the current's memory layout (for a (B, ...) current,
    its layout within each step). With ``membranes`` False the membranes are not kept and
    None is returned in their place (one (T, B, ...) tensor less to write).
    """
    static = steps is not None
    n_steps = int(steps) if static else current.shape[0]
    return _LIFSequence.apply(current, n_steps, static, beta, threshold, float(slope), bool(membranes))


# --- dropout ---------------------------------------------------------------------------------
# torch's dropout spends ~16 ns per element drawing Bernoulli samples (77-130 ms for the
# (T, B, 1024) dense input at T=100, B=128, as much as a whole LIF layer). A counter-based
# hash (splitmix64 of seed + index) gives independent uniform bits per element at ~0.2 ns,
# the same for any thread count, and the backward pass regenerates the mask instead of
# storing it. The seed is drawn from torch's generator, so torch.manual_seed and a resumed
# run's saved RNG state reproduce the masks.


@numba.njit(parallel=True, cache=True, nogil=True)
def _dropout_kernel(x, out, seed, keep_below, scale):  # pragma: no cover - compiled
    n = x.shape[0]
    for c in numba.prange((n + 65535) // 65536):
        lo = c * 65536
        hi = min(n, lo + 65536)
        x_c = x[lo:hi]
        out_c = out[lo:hi]
        # the hash written out in the loop, on slices: as a helper function it was 5x slower (measured)
        for k in range(hi - lo):
            z = numba.uint64(seed) + numba.uint64(lo + k) * numba.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> numba.uint64(30))) * numba.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> numba.uint64(27))) * numba.uint64(0x94D049BB133111EB)
            z = z ^ (z >> numba.uint64(31))
            keep = (z >> numba.uint64(40)) < numba.uint64(keep_below)  # top 24 bits vs (1-p) 2^24
            out_c[k] = x_c[k] * scale if keep else 0


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
