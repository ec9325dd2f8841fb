"""The graph compiled into segments for :mod:`.fast` (points 2 and 3 of its docstring).

Each LIF layer and the synaptic maps before it become one :class:`_Segment`: a Conv2d -> SumPool2d
pair is folded into one conv where that is cheaper, and each segment gets the narrowest compute
type (float32, float64 or int64) that is proven exact for its partial sums.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from qsnn_deploy.analysis.bounds import weight_gain
from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Linear, Output, SumPool2d
from qsnn_deploy.sim import lif


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
    float_lif: bool  # the LIF recurrence is exact in float64 (float_lif_exact)


def _fold_pool(conv: Conv2d, pool: SumPool2d, in_shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, int]] | None:
    """Folded kernel and stride of conv -> sum pool (see :mod:`.fast`), or None if no cheaper."""
    w = conv.weight.values
    o, i, kh, kw = w.shape
    (sh, sw), (ph, pw), (qh, qw) = conv.stride, pool.kernel, pool.stride
    big = np.zeros((o, i, kh + (ph - 1) * sh, kw + (pw - 1) * sw), np.int64)
    for u in range(ph):
        for v in range(pw):
            big[:, :, u * sh : u * sh + kh, v * sw : v * sw + kw] += w
    conv_out = conv.output_shape(in_shape)
    pooled = pool.output_shape(conv_out)
    # MACs per output channel; the pool's adds are counted once per channel, not per input
    unfolded = i * kh * kw * conv_out[1] * conv_out[2] + ph * pw * pooled[1] * pooled[2]
    if i * big.shape[2] * big.shape[3] * pooled[1] * pooled[2] >= unfolded:
        return None
    return big, (sh * qh, sw * qw)


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


def float_lif_exact(p: lif.LIFParams, a_bound: float) -> bool:
    """True if float64 holds every value of the LIF recurrence exactly (all integers < 2^52).

    |V| <= 2^(bits-1); the decay forms V * m + r; the sum adds |bias|, |threshold| (each
    < 2^(bits-1)) and |A| * 2^input_shift. ``wrap`` needs modular integers: :func:`.lif.step`.
    """
    half = 2.0 ** (p.state.bits - 1)
    return p.overflow != "wrap" and half * p.decay_mul + p.round_add < 2**52 and 3 * half + a_bound * 2.0**p.input_shift < 2**52


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


class _Planner:
    """Walks the chain once, grouping the maps before each LIF layer into a :class:`_Segment`.

    ``bound`` is the running magnitude bound of the current activations (:mod:`qsnn_deploy.analysis.bounds`,
    with pool folds applied), ``worst`` its maximum over the segment: it picks the segment's dtype.
    """

    def __init__(self, graph: Graph):
        inp = graph.input
        self.shapes = graph.shapes()
        self.f32_ok = _float32_exact()
        self.segments: list[_Segment] = []
        self.stages: list[_Stage] = []
        self.int_nodes: list[Any] = []
        self.bound = self.worst = float(max(abs(inp.dtype.min), abs(inp.dtype.max)))
        self.static = inp.encoding == "static"
        self.prev_shape = inp.shape
        self.elements = int(np.prod(self.prev_shape))
        self.flat_src = self.prev_shape

    def conv(self, node: Conv2d, nxt: Any) -> bool:
        """Add a conv (folded with the sum pool after it when cheaper); True if the pool was consumed."""
        folded = _fold_pool(node, nxt, self.prev_shape) if isinstance(nxt, SumPool2d) else None
        if folded is None:
            self.stages.append(_Stage("conv", node.weight.values, node.stride, node.padding))
            self.bound *= weight_gain(node.weight.values)
            self.int_nodes.append(node)
            return False
        self.stages.append(_Stage("conv", folded[0], folded[1], node.padding))
        self.bound *= weight_gain(folded[0])
        self.int_nodes += [node, nxt]
        return True

    def flatten(self, node: Flatten, nxt: Any) -> None:
        # Before a Linear, flatten in (H, W, C) order, a free view of channels-last memory,
        # and permute the Linear's columns to match (done when the Linear is reached).
        nhwc = len(self.prev_shape) == 3 and isinstance(nxt, Linear)
        self.flat_src = self.prev_shape
        self.stages.append(_Stage("flatten_nhwc" if nhwc else "flatten"))
        self.int_nodes.append(node)

    def linear(self, node: Linear) -> None:
        w = node.weight.values
        if self.stages and self.stages[-1].kind == "flatten_nhwc":
            c, h, wd = self.flat_src
            w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        self.stages.append(_Stage("linear", w))
        self.bound *= weight_gain(w)
        self.int_nodes.append(node)

    def lif(self, name: str, node: LIF) -> None:
        dtype = "float32" if self.worst < 2**24 and self.f32_ok else "float64" if self.worst < 2**53 else "int64"
        params = lif.LIFParams.from_node(node, name)
        self.segments.append(
            _Segment(
                name,
                params,
                self.shapes[name],
                _materialise(self.stages, dtype),
                tuple(self.int_nodes),
                dtype,
                self.static,
                self.elements,
                float_lif_exact(params, self.bound),
            )
        )
        self.stages, self.int_nodes, self.static = [], [], False
        self.bound = self.worst = 1.0  # the next segment's input is 0/1 spikes
        self.elements = 0


def _plan(graph: Graph) -> list[_Segment]:
    planner = _Planner(graph)
    nodes = [(n, v) for n, v in graph.chain()[1:] if not isinstance(v, Output)]
    k = 0
    while k < len(nodes):
        name, node = nodes[k]
        nxt = nodes[k + 1][1] if k + 1 < len(nodes) else None
        if isinstance(node, Conv2d):
            if planner.conv(node, nxt):
                k += 1
                name = nodes[k][0]
        elif isinstance(node, SumPool2d):
            planner.stages.append(_Stage("pool", stride=node.stride, kernel=node.kernel))
            planner.bound *= node.kernel[0] * node.kernel[1]
            planner.int_nodes.append(node)
        elif isinstance(node, Flatten):
            planner.flatten(node, nxt)
        elif isinstance(node, Linear):
            planner.linear(node)
        elif isinstance(node, LIF):
            planner.lif(name, node)
        planner.worst = max(planner.worst, planner.bound)
        planner.prev_shape = planner.shapes[name]
        planner.elements = max(planner.elements, int(np.prod(planner.prev_shape)))
        k += 1
    return planner.segments


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
