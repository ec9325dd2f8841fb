r"""Fast backend: layer by layer over many steps at once, bit-identical to :mod:`.reference`.

The reference runs node after node at every step. Here each LIF layer and the synaptic
nodes before it (a *segment*) run over a chunk of Tc steps at once:

1. The synaptic sums A of all Tc x B inputs are one batched torch call (``F.conv2d`` on
   channels-last, ``avg_pool2d`` with ``divisor_override=1`` as a sum pool, a BLAS matmul).
   A static input's first segment runs once per sample instead of once per step.
2. A Conv2d followed by a SumPool2d becomes one conv with the pool folded into its kernel,
   when that costs fewer MACs (conv k x k then pool 2x2: one (k+1)x(k+1) stride-2 conv,
   2.8x fewer MACs for k = 5)::

       K'[o, i, a, b] = sum_{u < ph, v < pw} K[o, i, a - u * sh, b - v * sw]
       stride' = (sh * psh, sw * psw),  padding' = padding

3. Floating point is used only where it is provably exact: every partial sum of a segment is
   an integer of magnitude at most ``bound = max_o sum |w_o| * max|input|`` (times the pool
   windows), and float32 (float64) represents every integer below 2^24 (2^53) exactly, in
   any summation order. Above 2^53 the segment runs on the reference's int64 NumPy ops.
4. The LIF recurrence over Tc steps is one Numba kernel, parallel over neurons and
   sequential in time. It runs the integer arithmetic of :func:`qsnn_deploy.sim.lif.step` in
   float64, which is exact when every value it forms is an integer below 2^52 (a 24-bit
   state times a 17-bit decay multiplier is 2^40) and vectorises better than int64 (no
   64-bit multiply). Where that is not proven (``wrap``, states wider than ~35 bits, huge
   sums), the layer steps through :func:`~qsnn_deploy.sim.lif.step` itself.

Memory is bounded: steps are processed in chunks so no activation exceeds ``_CHUNK_BYTES``,
and the LIF state (V, S) is carried from chunk to chunk.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dtypes import IntType
from ..errors import TargetError
from ..ir import LIF, Conv2d, Flatten, Graph, Linear, Output, SumPool2d
from . import lif, reference
from .reference import BackendRun

# Largest (Tc, B, ...) activation of a chunk, at 8 bytes per value. Measured at B = 256 on the
# Fashion-MNIST net: 24 MiB chunks (5 steps) ran at 45%, 96 MiB at 75% of the 384 MiB speed.
_CHUNK_BYTES = 256 << 20
_NEURON_CHUNK = 2048  # neurons per parallel task in the LIF kernel: its state stays in L1
_MODES = {("delayed", "subtract"): 0, ("delayed", "zero"): 1, ("immediate", "subtract"): 2, ("immediate", "zero"): 3}
_kernel: Any = None
_import_error: str | None = None


def unavailable_reason() -> str | None:
    """Why the fast backend cannot run here (None if it can)."""
    global _kernel, _import_error
    if _kernel is None and _import_error is None:
        try:
            import numba  # noqa: F401
            import torch  # noqa: F401

            _kernel = _build_kernel()
        except ImportError as exc:  # pragma: no cover - both are installed in CI
            _import_error = str(exc)
    return _import_error


def available() -> bool:
    return unavailable_reason() is None


def _build_kernel() -> tuple[Any, Any]:
    """(generic, snnTorch-default) float64 LIF kernels; Numba compiles them on first use."""
    return _float_kernel(False), _float_kernel(True)


def _float_kernel(snntorch_default: bool) -> Any:
    """The LIF recurrence (saturating, no split decay) in float64.

    Used only when every value it forms is an integer below 2^52 (:func:`_float_lif_exact`):
    then every operation is exact and floor(x * 2^-k) is the arithmetic shift, and AVX-512
    vectorises it better than int64 code (which needs 64-bit multiplies). ``snntorch_default``
    compiles the variant with delayed subtract reset and ``>`` fixed as constants (measured
    1.3-1.7x faster than reading them at run time); the other one reads ``mode``/``ge``.
    """
    import numba

    fixed = snntorch_default

    @numba.njit(parallel=True, cache=True, nogil=True)
    def lif_scan_f64(cur, static, steps, inner, channels, thr_c, bias_c, in_scale, mul, radd, inv, mode, ge, smin, smax,
                     check_acc, acc_lo, acc_hi, v, s, spk, write, counts, ovf_n, acc_n):  # pragma: no cover - compiled
        md = 0 if fixed else mode
        cmp_ge = False if fixed else ge
        n = v.shape[0]
        for c in numba.prange((n + _NEURON_CHUNK - 1) // _NEURON_CHUNK):
            lo = c * _NEURON_CHUNK
            hi = min(n, lo + _NEURON_CHUNK)
            m = hi - lo
            thr = np.empty(m, np.float64)
            bias = np.empty(m, np.float64)
            vl = v[lo:hi].astype(np.float64)
            sl = s[lo:hi].astype(np.float64)
            n_spk = np.zeros(m, np.float64)
            n_ovf = np.zeros(m, np.float64)
            n_acc = np.zeros(m, np.float64)
            for j in range(m):
                ch = ((lo + j) // inner) % channels
                thr[j] = thr_c[ch]
                bias[j] = bias_c[ch]
            for t in range(steps):
                row = cur[0 if static else t, lo:hi]
                for j in range(m):
                    a = np.float64(row[j])
                    n_acc[j] += (a < acc_lo) | (a > acc_hi)
                    sp = sl[j]
                    vp = vl[j] * (1.0 - sp) if md == 1 else vl[j]
                    u = np.floor((vp * mul + radd) * inv) + bias[j] + a * in_scale
                    if md == 0:
                        u -= sp * thr[j]
                    n_ovf[j] += (u < smin) | (u > smax)
                    u = min(max(u, smin), smax)
                    if cmp_ge:
                        f = 1.0 if u >= thr[j] else 0.0
                    else:
                        f = 1.0 if u > thr[j] else 0.0
                    if md == 2:
                        u -= f * thr[j]
                    elif md == 3:
                        u *= 1.0 - f
                    vl[j] = u
                    sl[j] = f
                    n_spk[j] += f
                if write:
                    out = spk[t, lo:hi]
                    for j in range(m):
                        out[j] = sl[j]
            for j in range(m):
                v[lo + j] = np.int64(vl[j])
                s[lo + j] = np.int64(sl[j])
                counts[lo + j] += np.int64(n_spk[j])
                ovf_n[lo + j] += np.int64(n_ovf[j])
                if check_acc:
                    acc_n[lo + j] += np.int64(n_acc[j])

    return lif_scan_f64


# --- plan: the graph compiled into segments ----------------------------------------------------


@dataclass(frozen=True)
class _Stage:
    """One map of a segment. ``weight`` is int64 (O, ...) until :func:`_materialise`."""

    kind: str  # "conv" | "pool" | "flatten" | "flatten_nhwc" | "linear"
    weight: Any = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    kernel: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class _Segment:
    """A LIF layer and the maps computing its synaptic sums A from the previous layer's output."""

    name: str  # the LIF's
    params: lif.LIFParams
    shape: tuple[int, ...]  # per sample
    stages: tuple[_Stage, ...]  # float path (torch / BLAS)
    int_nodes: tuple[Any, ...]  # the same maps as IR nodes, for the int64 path
    dtype: str  # "float32" | "float64" | "int64"
    static: bool  # the input is the same at every step: A is computed once
    elements: int  # largest activation per sample and step (input, stages, output)
    float_lif: bool  # the LIF recurrence is exact in float64 (_float_lif_exact)


def _fold_pool(conv: Conv2d, pool: SumPool2d, in_shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, int]] | None:
    """Folded kernel and stride of conv -> sum pool (module docstring), or None if no cheaper."""
    w = conv.weight.values
    o, i, kh, kw = w.shape
    (sh, sw), (ph, pw), (qh, qw) = conv.stride, pool.kernel, pool.stride
    big = np.zeros((o, i, kh + (ph - 1) * sh, kw + (pw - 1) * sw), np.int64)
    for u in range(ph):
        for v in range(pw):
            big[:, :, u * sh: u * sh + kh, v * sw: v * sw + kw] += w
    conv_out = conv.output_shape(in_shape)
    pooled = pool.output_shape(conv_out)
    # MACs per output channel; the pool's adds are counted once per channel, not per input
    unfolded = i * kh * kw * conv_out[1] * conv_out[2] + ph * pw * pooled[1] * pooled[2]
    if i * big.shape[2] * big.shape[3] * pooled[1] * pooled[2] >= unfolded:
        return None
    return big, (sh * qh, sw * qw)


def _weight_bound(w: np.ndarray) -> float:
    """max over outputs o of sum |w[o, ...]|: the gain from max|input| to max|partial sum|."""
    return float(np.abs(w.astype(np.float64)).reshape(w.shape[0], -1).sum(axis=1).max())


def _float32_exact() -> bool:
    """False if torch was told to run float32 convs/matmuls in a narrower format (tf32, bf16)."""
    import torch

    if torch.get_float32_matmul_precision() != "highest":
        return False
    mkldnn = getattr(torch.backends, "mkldnn", None)
    for part in ("conv", "matmul"):
        if getattr(getattr(mkldnn, part, None), "fp32_precision", "none") not in ("none", "ieee"):
            return False
    return True


def _float_lif_exact(p: lif.LIFParams, a_bound: float) -> bool:
    """True if float64 holds every value of the LIF recurrence exactly (all integers < 2^52).

    |V| <= 2^(bits-1); the decay forms V * m + r; the sum adds |bias|, |threshold| (each
    < 2^(bits-1)) and |A| * 2^input_shift. ``wrap`` needs modular integers: :func:`.lif.step`.
    """
    half = 2.0 ** (p.state.bits - 1)
    return (p.overflow != "wrap" and half * p.decay_mul + p.round_add < 2**52
            and 3 * half + a_bound * 2.0**p.input_shift < 2**52)


def _materialise(stages: list[_Stage], dtype: str) -> tuple[_Stage, ...]:
    """Weights in the compute type: torch channels-last for convs, transposed NumPy for matmuls."""
    import torch

    out = []
    for st in stages:
        if st.kind == "conv" and dtype != "int64":
            w = torch.from_numpy(st.weight.astype(dtype)).contiguous(memory_format=torch.channels_last)
            st = _Stage("conv", w, st.stride, st.padding)
        elif st.kind == "linear" and dtype != "int64":
            st = _Stage("linear", np.ascontiguousarray(st.weight.T.astype(dtype)))
        out.append(st)
    return tuple(out)


def _plan(graph: Graph) -> list[_Segment]:
    shapes = graph.shapes()
    chain = graph.chain()
    inp = graph.input
    nodes = [(n, v) for n, v in chain[1:] if not isinstance(v, Output)]
    f32_ok = _float32_exact()
    segments: list[_Segment] = []
    stages: list[_Stage] = []
    int_nodes: list[Any] = []
    bound = worst = float(max(abs(inp.dtype.min), abs(inp.dtype.max)))
    static = inp.encoding == "static"
    prev_shape = inp.shape
    elements = int(np.prod(prev_shape))
    flat_src = prev_shape
    k = 0
    while k < len(nodes):
        name, node = nodes[k]
        nxt = nodes[k + 1][1] if k + 1 < len(nodes) else None
        if isinstance(node, Conv2d):
            folded = _fold_pool(node, nxt, prev_shape) if isinstance(nxt, SumPool2d) else None
            if folded is None:
                stages.append(_Stage("conv", node.weight.values, node.stride, node.padding))
                bound *= _weight_bound(node.weight.values)
                int_nodes.append(node)
            else:
                stages.append(_Stage("conv", folded[0], folded[1], node.padding))
                bound *= _weight_bound(folded[0])
                int_nodes += [node, nxt]
                k += 1
                name = nodes[k][0]
        elif isinstance(node, SumPool2d):
            stages.append(_Stage("pool", stride=node.stride, kernel=node.kernel))
            bound *= node.kernel[0] * node.kernel[1]
            int_nodes.append(node)
        elif isinstance(node, Flatten):
            # Before a Linear, flatten in (H, W, C) order, a free view of channels-last memory,
            # and permute the Linear's columns to match (done when the Linear is reached).
            nhwc = len(prev_shape) == 3 and isinstance(nxt, Linear)
            flat_src = prev_shape
            stages.append(_Stage("flatten_nhwc" if nhwc else "flatten"))
            int_nodes.append(node)
        elif isinstance(node, Linear):
            w = node.weight.values
            if stages and stages[-1].kind == "flatten_nhwc":
                c, h, wd = flat_src
                w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
            stages.append(_Stage("linear", w))
            bound *= _weight_bound(w)
            int_nodes.append(node)
        elif isinstance(node, LIF):
            dtype = "float32" if worst < 2**24 and f32_ok else "float64" if worst < 2**53 else "int64"
            params = lif.LIFParams.from_node(node, name)
            segments.append(_Segment(name, params, shapes[name], _materialise(stages, dtype), tuple(int_nodes), dtype,
                                     static, elements, _float_lif_exact(params, bound)))
            stages, int_nodes, static = [], [], False
            bound = worst = 1.0  # the next segment's input is 0/1 spikes
            elements = 0
        worst = max(worst, bound)
        prev_shape = shapes[name]
        elements = max(elements, int(np.prod(prev_shape)))
        k += 1
    return segments


_PLANS: dict[int, tuple[weakref.ref, bool, list[_Segment]]] = {}


def _cached_plan(graph: Graph) -> list[_Segment]:
    """Plans are cached per graph object (graphs are immutable) while the graph lives.

    A change of torch's float32 precision settings invalidates the plan (it picks the dtypes).
    """
    key, f32_ok = id(graph), _float32_exact()
    hit = _PLANS.get(key)
    if hit is not None and hit[0]() is graph and hit[1] == f32_ok:
        return hit[2]
    plan = _plan(graph)
    _PLANS[key] = (weakref.ref(graph, lambda _: _PLANS.pop(key, None)), f32_ok, plan)
    return plan


# --- running a batch --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Act:
    """A batch of activations: (N, H, W, C) memory when ``nhwc``, else (N, *shape) C order."""

    data: np.ndarray
    nhwc: bool

    def logical(self) -> np.ndarray:
        return self.data.transpose(0, 3, 1, 2) if self.nhwc else self.data


def _sums(seg: _Segment, act: _Act, rows: int) -> tuple[np.ndarray, bool]:
    """Synaptic sums of ``seg`` on ``act`` as (rows, B * n) in memory order, and whether NHWC."""
    if seg.dtype == "int64":
        h = act.logical().astype(np.int64, copy=False)
        for node in seg.int_nodes:
            h = reference.apply_node(node, h)
        return np.ascontiguousarray(h).reshape(rows, -1), False
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(act.data).to(getattr(torch, seg.dtype))
    if act.nhwc:
        t = t.permute(0, 3, 1, 2)  # logical NCHW over channels-last memory: no copy
    for st in seg.stages:
        if st.kind == "conv":
            # channels-last is oneDNN's fastest layout for these convs (measured 1.5x over NCHW here)
            t = F.conv2d(t.contiguous(memory_format=torch.channels_last), st.weight, stride=st.stride, padding=st.padding)
        elif st.kind == "pool":
            t = F.avg_pool2d(t, st.kernel, st.stride, divisor_override=1)  # a sum pool: exact
        elif st.kind == "flatten":
            t = t.flatten(1)
        elif st.kind == "flatten_nhwc":
            t = t.permute(0, 2, 3, 1).reshape(t.shape[0], -1) if t.dim() == 4 else t.flatten(1)
        else:  # linear: NumPy's BLAS sgemm/dgemm is faster than torch's for a few outputs here
            t = torch.from_numpy(np.matmul(t.numpy(), st.weight))
    if t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
        return t.permute(0, 2, 3, 1).numpy().reshape(rows, -1), True
    return t.contiguous().numpy().reshape(rows, -1), False


def _logical(spk: np.ndarray, nhwc: bool, lead: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Memory-order neurons (..., B * n) as (*lead, *shape) in the graph's C order."""
    if nhwc:
        c, h, w = shape
        v = spk.reshape(*lead, h, w, c)
        return np.moveaxis(v, -1, -3)
    return spk.reshape(*lead, *shape)


class _LayerRun:
    """One LIF layer's state and counters across the chunks of a batch.

    Float-kernel layers keep flat arrays in the memory order of their sums (NHWC or C order);
    layers on the exact NumPy fallback keep a :class:`~.lif.LIFState` in the graph's C order.
    """

    def __init__(self, seg: _Segment, batch: int):
        self.seg = seg
        self.batch = batch
        n = batch * int(np.prod(seg.shape))
        self.nhwc = False
        self.counts = np.zeros(n, np.int64)
        self.acc = np.zeros(n, np.int64)
        self.acc_total = 0  # the fallback counts accumulator overflows here
        if seg.float_lif:
            self.v, self.s, self.ovf = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
        else:
            self.state = lif.initial_state((batch, *seg.shape))

    def step_chunk(self, cur: np.ndarray, nhwc: bool, t0: int, steps: int, spk: np.ndarray, write: bool,
                   accumulator: IntType | None) -> None:
        """Advance by ``steps`` steps on the sums ``cur`` (rows, B * n); spikes into ``spk``."""
        seg, p = self.seg, self.seg.params
        if not seg.float_lif:
            self._numpy_chunk(cur, nhwc, t0, steps, spk, write, accumulator)
            return
        self.nhwc = nhwc
        inner = 1 if (nhwc or len(seg.shape) == 1) else int(np.prod(seg.shape[1:]))
        mode = _MODES[(p.reset_timing, p.reset)]
        generic, snntorch_default = _kernel
        kernel = snntorch_default if (mode == 0 and p.compare == "gt") else generic
        # int64 covers every synaptic sum (checked by the caller), so wider accumulator bounds are harmless
        lo, hi = (float(accumulator.min), float(accumulator.max)) if accumulator is not None else (0.0, 0.0)
        kernel(cur, seg.static, steps, inner, seg.shape[0], p.threshold.astype(np.float64), p.bias.astype(np.float64),
               float(2**p.input_shift), float(p.decay_mul), float(p.round_add), 2.0**-p.decay_shift, mode, p.compare == "ge",
               float(p.state.min), float(p.state.max), accumulator is not None, lo, hi, self.v, self.s, spk, write,
               self.counts, self.ovf, self.acc)
        if p.overflow == "error" and self.ovf.any():
            raise TargetError(f"layer {seg.name!r}: membrane overflows the state type {p.state.name} [{p.state.min}, "
                              f"{p.state.max}] (overflow policy 'error') within steps {t0}..{t0 + steps - 1}")

    def _numpy_chunk(self, cur: np.ndarray, nhwc: bool, t0: int, steps: int, spk: np.ndarray, write: bool,
                     accumulator: IntType | None) -> None:
        # Exact fallback (wrap, wide states, huge sums): the reference's own step, per step.
        seg = self.seg
        sums = _logical(cur, nhwc, (cur.shape[0], self.batch), seg.shape)
        out = _logical(spk, nhwc, (steps, self.batch), seg.shape) if write else None
        counts = self.counts.reshape(self.batch, *seg.shape)
        for t in range(steps):
            a = sums[0 if seg.static else t]
            if accumulator is not None:
                self.acc_total += reference.outside(a, accumulator)
            try:
                spikes, self.state = lif.step(a, self.state, seg.params)
            except TargetError as exc:
                raise TargetError(f"{exc} at step {t0 + t}") from None
            counts += spikes
            if out is not None:
                out[t] = spikes

    def results(self) -> tuple[np.ndarray, int, int]:
        """(B, *shape) spike counts per neuron, overflows, accumulator overflows."""
        counts = np.ascontiguousarray(_logical(self.counts, self.nhwc, (self.batch,), self.seg.shape))
        overflows = int(self.ovf.sum()) if self.seg.float_lif else int(self.state.overflows.sum())
        return counts, overflows, int(self.acc.sum()) + self.acc_total


def run(graph: Graph, x: np.ndarray, timesteps: int, *, record: bool = False,
        accumulator: IntType | None = None) -> BackendRun:
    """Same contract and results as :func:`qsnn_deploy.sim.reference.run`."""
    import torch

    if unavailable_reason() is not None:  # pragma: no cover - guarded by the caller
        raise TargetError(f"fast backend unavailable: {unavailable_reason()}")
    plan = _cached_plan(graph)
    batch, steps = x.shape[0], timesteps
    layers = [_LayerRun(seg, batch) for seg in plan]
    rec = {seg.name: np.zeros((steps, batch, *seg.shape), np.uint8) for seg in plan} if record else None
    per_step = max([seg.elements for seg in plan if not seg.static] or [1])
    chunk = int(max(1, min(steps, _CHUNK_BYTES // (8 * batch * per_step))))

    # NNPACK's Winograd/FFT convolutions are not exact on integers; oneDNN's direct ones are
    with torch.no_grad(), torch.backends.nnpack.flags(enabled=False):
        static_sums = _sums(plan[0], _Act(x, False), 1) if plan[0].static else None
        for t0 in range(0, steps, chunk):
            tc = min(chunk, steps - t0)
            act = None if plan[0].static else _Act(x[:, t0:t0 + tc].swapaxes(0, 1).reshape(tc * batch, *x.shape[2:]), False)
            for i, (seg, layer) in enumerate(zip(plan, layers)):
                cur, nhwc = static_sums if (i == 0 and static_sums is not None) else _sums(seg, act, tc)
                nxt = plan[i + 1] if i + 1 < len(plan) else None
                write = nxt is not None or record
                # float32 spikes straight into a float32 conv (a uint8 -> float32 pass cost 20% of the
                # run); uint8 otherwise, which bounds the kernel signatures Numba compiles (~2 s each)
                spk_type = np.float32 if nxt is not None and nxt.dtype == "float32" else np.uint8
                spk = np.empty((tc, batch * int(np.prod(seg.shape))) if write else (1, 1), spk_type)  # all written
                layer.step_chunk(cur, nhwc, t0, tc, spk, write, accumulator)
                if rec is not None:
                    rec[seg.name][t0:t0 + tc] = _logical(spk, nhwc, (tc, batch), seg.shape)
                if nxt is not None:
                    c, *hw = seg.shape
                    act = _Act(spk.reshape(tc * batch, *((*hw, c) if nhwc else seg.shape)), nhwc)

    results = [layer.results() for layer in layers]
    return BackendRun(
        neuron_counts={seg.name: r[0] for seg, r in zip(plan, results)},
        saturations={seg.name: r[1] for seg, r in zip(plan, results)},
        accumulator_overflows={seg.name: r[2] for seg, r in zip(plan, results)},
        spikes=rec,
    )


__all__ = ["available", "run", "unavailable_reason"]
