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
                bound *= weight_gain(node.weight.values)
                int_nodes.append(node)
            else:
                stages.append(_Stage("conv", folded[0], folded[1], node.padding))
                bound *= weight_gain(folded[0])
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
            bound *= weight_gain(w)
            int_nodes.append(node)
        elif isinstance(node, LIF):
            dtype = "float32" if worst < 2**24 and f32_ok else "float64" if worst < 2**53 else "int64"
            params = lif.LIFParams.from_node(node, name)
            segments.append(
                _Segment(
                    name,
                    params,
                    shapes[name],
                    _materialise(stages, dtype),
                    tuple(int_nodes),
                    dtype,
                    static,
                    elements,
                    float_lif_exact(params, bound),
                )
            )
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
