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

from dataclasses import dataclass

import numpy as np

from qsnn_deploy.errors import TargetError
from qsnn_deploy.ir import Graph
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.sim import fast_kernels, lif, reference
from qsnn_deploy.sim.driver import run_steps
from qsnn_deploy.sim.fast_kernels import available, unavailable_reason
from qsnn_deploy.sim.fast_plan import _cached_plan, _Segment
from qsnn_deploy.sim.reference import BackendRun

# Largest (Tc, B, ...) activation of a chunk, at 8 bytes per value. Measured at B = 256 on the
# Fashion-MNIST net: 24 MiB chunks (5 steps) ran at 45%, 96 MiB at 75% of the 384 MiB speed.
_CHUNK_BYTES = 256 << 20


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

    def step_chunk(
        self, cur: np.ndarray, nhwc: bool, t0: int, steps: int, spk: np.ndarray, write: bool, accumulator: IntType | None
    ) -> None:
        """Advance by ``steps`` steps on the sums ``cur`` (rows, B * n); spikes into ``spk``."""
        seg, p = self.seg, self.seg.params
        if not seg.float_lif:
            self._numpy_chunk(cur, nhwc, t0, steps, spk, write, accumulator)
            return
        self.nhwc = nhwc
        inner = 1 if (nhwc or len(seg.shape) == 1) else int(np.prod(seg.shape[1:]))
        fast_kernels.scan(
            cur, seg.static, steps, inner, seg.shape[0], p, self.v, self.s, spk, write, self.counts, self.ovf, self.acc, accumulator
        )
        if p.overflow == "error" and self.ovf.any():
            raise TargetError(
                f"layer {seg.name!r}: membrane overflows the state type {p.state.name} [{p.state.min}, "
                f"{p.state.max}] (overflow policy 'error') within steps {t0}..{t0 + steps - 1}"
            )

    def _numpy_chunk(
        self, cur: np.ndarray, nhwc: bool, t0: int, steps: int, spk: np.ndarray, write: bool, accumulator: IntType | None
    ) -> None:
        # Exact fallback (wrap, wide states, huge sums): the reference's own step, per step.
        seg = self.seg
        sums = _logical(cur, nhwc, (cur.shape[0], self.batch), seg.shape)
        out = _logical(spk, nhwc, (steps, self.batch), seg.shape) if write else None
        counts = self.counts.reshape(self.batch, *seg.shape)

        def counted_step(a: np.ndarray, state: lif.LIFState, params: lif.LIFParams) -> tuple[np.ndarray, lif.LIFState]:
            if accumulator is not None:
                self.acc_total += reference.outside(a, accumulator)
            return lif.step(a, state, params)

        def collect(t: int, spikes: np.ndarray, _: object) -> None:
            counts[...] += spikes
            if out is not None:
                out[t] = spikes

        inputs = sums[0] if seg.static else sums  # a static layer's sums have one row, used at every step
        self.state = run_steps(counted_step, inputs, self.state, seg.params, steps, static=seg.static, sink=collect, t0=t0)

    def results(self) -> tuple[np.ndarray, int, int]:
        """(B, *shape) spike counts per neuron, overflows, accumulator overflows."""
        counts = np.ascontiguousarray(_logical(self.counts, self.nhwc, (self.batch,), self.seg.shape))
        overflows = int(self.ovf.sum()) if self.seg.float_lif else int(self.state.overflows.sum())
        return counts, overflows, int(self.acc.sum()) + self.acc_total


def run(graph: Graph, x: np.ndarray, timesteps: int, *, record: bool = False, accumulator: IntType | None = None) -> BackendRun:
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
            act = None if plan[0].static else _Act(x[:, t0 : t0 + tc].swapaxes(0, 1).reshape(tc * batch, *x.shape[2:]), False)
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
                    rec[seg.name][t0 : t0 + tc] = _logical(spk, nhwc, (tc, batch), seg.shape)
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
