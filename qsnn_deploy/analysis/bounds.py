"""The one worst-case value analysis of a frozen graph: every bound the toolchain relies on.

Two views of the same propagation along the graph, both exact on Python integers:

- :func:`intervals`: the worst-case ``[lo, hi]`` of each node's output over every input the
  Input type allows (integer interval arithmetic). Target rules use it: an accumulator must
  hold every synaptic sum, signs included.
- :func:`magnitudes`: an upper bound of ``|value|``, ``max|input| * max_o sum_i |w[o, i]|``,
  which also bounds every partial sum in any summation order. The simulator (int64 range) and
  the ONNX exporters (float64/float32 exactness) use it, because a backend that may sum in any
  order needs the partial sums bounded, not only the totals.

:func:`weight_gain` is the factor both views share; :func:`lif_peak` bounds the intermediates
of one LIF step; :func:`readout_score_bound` the membrane of a non-spiking summing readout. A LIF layer outputs spikes, 0 or 1, so the propagation restarts there.
"""

from __future__ import annotations

import numpy as np

from qsnn_deploy.ir import LIF, Conv2d, Graph, Input, Linear, SumPool2d


def weight_gain(w: np.ndarray) -> int:
    """max over outputs o of sum |w[o, ...]|: the gain from max|input| to max|partial sum|."""
    flat = np.abs(np.asarray(w).astype(object)).reshape(w.shape[0], -1)
    return int(max(flat.sum(axis=1))) if flat.size else 0


def intervals(graph: Graph) -> dict[str, tuple[int, int]]:
    """Worst-case [lo, hi] of every node's output values, from the Input type's range.

    A synaptic node's output channel o spans [sum_i min(w * lo, w * hi), sum_i max(w * lo,
    w * hi)]; a sum pool multiplies by its window; a LIF outputs [0, 1]. Conv padding adds
    zeros, so 0 joins the input interval.
    """
    bounds: dict[str, tuple[int, int]] = {}
    for name in graph.topological_order():
        node = graph.nodes[name]
        preds = graph.predecessors(name)
        lo, hi = bounds[preds[0]] if preds else (0, 0)
        if isinstance(node, Input):
            lo, hi = node.dtype.min, node.dtype.max
        elif isinstance(node, (Conv2d, Linear)):
            if isinstance(node, Conv2d) and any(node.padding):
                lo, hi = min(lo, 0), max(hi, 0)  # padded zeros are inputs too
            w = node.weight.values.reshape(node.weight.shape[0], -1)
            # Python integers: exact for any weight type (int64 sums could overflow for 64-bit weights)
            pos = np.where(w > 0, w, 0).astype(object).sum(axis=1)
            neg = np.where(w < 0, w, 0).astype(object).sum(axis=1)
            lo, hi = min(p * lo + n * hi for p, n in zip(pos, neg)), max(p * hi + n * lo for p, n in zip(pos, neg))
        elif isinstance(node, SumPool2d):
            k = node.kernel[0] * node.kernel[1]
            lo, hi = lo * k, hi * k
        elif isinstance(node, LIF):
            lo, hi = 0, 1
        bounds[name] = (lo, hi)
    return bounds


def magnitudes(graph: Graph) -> dict[str, int]:
    """Upper bound of |value| of each node's output (and of every partial sum), along the chain."""
    out: dict[str, int] = {}
    prev = 0
    for name, node in graph.chain():
        if isinstance(node, Input):
            prev = max(abs(node.dtype.min), abs(node.dtype.max))
        elif isinstance(node, (Conv2d, Linear)):
            prev = weight_gain(node.weight.values) * prev
        elif isinstance(node, SumPool2d):
            prev = prev * node.kernel[0] * node.kernel[1]
        elif isinstance(node, LIF):
            prev = 1
        out[name] = prev
    return out


def lif_peak(node: LIF, in_mag: int) -> int:
    """Largest |intermediate| of one LIF step for synaptic sums up to ``in_mag``.

    The candidates: the shifted input plus bias, the decay's product ``V * mul`` before its
    shift, and the pre-overflow sum with a threshold subtracted, plus half the state range for
    the offset a wrap computes with (V - min).
    """
    half = 2 ** (node.state.bits - 1)
    thr = int(np.abs(node.threshold.values).max())
    current = in_mag * 2**node.input_shift + int(np.abs(node.bias.values).max())
    product = half * node.decay_mul + 2**node.decay_shift
    total = half + current + thr
    return max(current, product, total + half)


def readout_score_bound(weight: np.ndarray, bias: np.ndarray, input_shift: int, steps: int) -> int:
    """Largest |V| a non-spiking summing readout reaches in ``steps`` steps of 0/1 input spikes:
    ``steps * ((max_c sum_p |W_cp|) << input_shift + max_c |B_c|)`` (beta = 1, no reset)."""
    w, b = np.asarray(weight, np.int64), np.asarray(bias, np.int64)
    return int(steps) * ((int(np.abs(w).sum(axis=1).max()) << int(input_shift)) + int(np.abs(b).max()))


__all__ = ["intervals", "lif_peak", "magnitudes", "readout_score_bound", "weight_gain"]
