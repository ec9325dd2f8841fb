"""The test oracle: an independent, deliberately naive transcription of docs/arithmetic.md.

One copy for every test (the simulator, the fast backend, exporters, calibration of the test
graphs): loops instead of im2col, Python's exact integers where values may pass int64, and no
code shared with ``qsnn_deploy.sim``. It is written from the docs, so a disagreement means the
docs, the simulator or the oracle is wrong, never two copies of one mistake.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Linear, SumPool2d


def oracle_apply(node: Any, x: np.ndarray) -> np.ndarray:
    """A synaptic or layout node on (B, ...) int64 values, window by window."""
    if isinstance(node, Conv2d):
        w = node.weight.values
        (sh, sw), (ph, pw) = node.stride, node.padding
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        oh, ow = (xp.shape[2] - w.shape[2]) // sh + 1, (xp.shape[3] - w.shape[3]) // sw + 1
        y = np.zeros((x.shape[0], w.shape[0], oh, ow), np.int64)
        for r in range(oh):
            for c in range(ow):
                patch = xp[:, :, r * sh : r * sh + w.shape[2], c * sw : c * sw + w.shape[3]]
                y[:, :, r, c] = np.einsum("bikl,oikl->bo", patch, w)
        return y
    if isinstance(node, SumPool2d):
        (kh, kw), (sh, sw) = node.kernel, node.stride
        oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
        y = np.zeros((*x.shape[:2], oh, ow), np.int64)
        for r in range(oh):
            for c in range(ow):
                y[:, :, r, c] = x[:, :, r * sh : r * sh + kh, c * sw : c * sw + kw].sum(axis=(2, 3))
        return y
    if isinstance(node, Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(node, Linear):
        return x @ node.weight.values.T
    raise TypeError(type(node).__name__)  # pragma: no cover - test helper


def oracle_lif_step(a: Any, v: Any, s: Any, node: LIF, thr: Any, bias: Any) -> tuple[Any, Any, Any]:
    """One LIF step, docs/arithmetic.md "Implementing qsnn-deploy graphs": (V[t], S[t], overflowed).

    Works on int64 arrays (small values) and on Python integers or object arrays (any size).
    ``overflow="error"`` raises OverflowError.
    """
    r = (1 << (node.decay_shift - 1)) if node.rounding == "half_up" and node.decay_shift > 0 else 0

    def dec(u: Any) -> Any:
        return (u * node.decay_mul + r) >> node.decay_shift

    i = a * (1 << node.input_shift) + bias
    if node.reset_timing == "delayed":
        u = dec(v) + i - s * thr if node.reset == "subtract" else dec(v * (1 - s)) + i
    else:
        u = dec(v) + i
    lo, hi = node.state.min, node.state.max
    over = (u < lo) | (u > hi)
    if node.overflow == "saturate":
        u = np.minimum(np.maximum(u, lo), hi) if isinstance(u, np.ndarray) else min(max(u, lo), hi)
    elif node.overflow == "wrap":
        u = (u - lo) % (1 << node.state.bits) + lo
    elif np.any(over):
        raise OverflowError("membrane overflow")
    spike = (u > thr) if node.compare == "gt" else (u >= thr)
    spike = spike.astype(np.int64) if isinstance(spike, np.ndarray) else int(spike)
    if node.reset_timing == "immediate":
        u = u - spike * thr if node.reset == "subtract" else u * (1 - spike)
    return u, spike, over


def oracle_lif_layer(node: LIF, a: np.ndarray) -> list[np.ndarray]:
    """Spikes of one LIF layer over T steps of int64 synaptic sums ``a`` (T, B, C, ...)."""
    chan = (1, -1) + (1,) * (a.ndim - 3)
    thr, bias = node.threshold.values.reshape(chan), node.bias.values.reshape(chan)
    v = np.zeros(a.shape[1:], np.int64)
    s = np.zeros_like(v)
    out = []
    for at in a:
        v, s, _ = oracle_lif_step(at.astype(np.int64), v, s, node, thr, bias)
        out.append(s)
    return out


def oracle_run(graph: Graph, x: np.ndarray, timesteps: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(counts (B, n_out), {LIF: (T, B, ...) uint8 spikes}) of a chain graph, layer by layer.

    ``x`` is (B, *shape) for static inputs and (B, T, *shape) for frames.
    """
    static = graph.input.encoding == "static"
    values = [np.asarray(x if static else x[:, t], dtype=np.int64) for t in range(timesteps)]
    spikes: dict[str, np.ndarray] = {}
    for name, node in graph.chain()[1:-1]:
        if isinstance(node, LIF):
            values = oracle_lif_layer(node, np.stack(values))
            spikes[name] = np.stack(values).astype(np.uint8)
        else:
            values = [oracle_apply(node, v) for v in values]
    return np.stack(values).sum(axis=0).reshape(len(x), -1), spikes
