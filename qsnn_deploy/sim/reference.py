r"""The reference simulator: plain NumPy, int64, one time step after another.

This module is the executable form of the IR's semantics and is written to be read by a
hardware team. Every node is a few lines of integer NumPy; the time loop feeds each step's
input through the chain in order. It imports no torch (a test checks this), has no fast
paths and no floating point, so it is exact by construction as long as no int64 sum
overflows, which :func:`qsnn_deploy.sim.simulator.simulate` proves from the weights before
calling it.

Per step t, with x[t] the input (the same array at every t for a ``static`` Input)::

    h = x[t]
    for each node in chain order:
        Conv2d:    h[b, o, y, x] = sum_{i, ky, kx} w[o, i, ky, kx] * h_pad[b, i, sy*y + ky, sx*x + kx]
        SumPool2d: h[b, c, y, x] = sum_{ky < kh, kx < kw} h[b, c, sy*y + ky, sx*x + kx]
        Flatten:   h = h.reshape(B, -1)                    (C order, channel-major)
        Linear:    h[b, o] = sum_i w[o, i] * h[b, i]
        LIF:       h, state = lif.step(h, state, params)   (h is now 0/1 spikes)
    count[t] += h at the Output
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Linear, Node, Output, SumPool2d
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.sim import lif
from qsnn_deploy.sim.driver import run_steps


class BackendRun(NamedTuple):
    """What a backend returns for one batch; :mod:`.run` turns it into a ``SimResult``."""

    #: LIF name -> (B, *shape) int64: spikes of each neuron summed over the T steps
    neuron_counts: dict[str, np.ndarray]
    #: LIF name -> neuron-steps at which the overflow policy acted (over batch and steps)
    saturations: dict[str, int]
    #: LIF name -> neuron-steps whose synaptic sum A lay outside the accumulator type
    accumulator_overflows: dict[str, int]
    #: LIF name -> (T, B, *shape) uint8 spikes, when recording
    spikes: dict[str, np.ndarray] | None
    #: LIF name -> (T, B, *shape) int64 membrane V[t] after step t (after an immediate reset), when tracing
    membranes: dict[str, np.ndarray] | None = None


# --- integer layers -----------------------------------------------------------------------


def conv2d(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], padding: tuple[int, int]) -> np.ndarray:
    """Integer 2-D convolution without bias (cross-correlation, as torch's ``conv2d``).

    Args:
        x: (B, I, H, W) int64.
        w: (O, I, KH, KW) int64.
        stride, padding: (rows, columns); padding adds zeros on both sides.

    Returns:
        (B, O, OH, OW) int64 with OH = (H + 2 * ph - KH) // sh + 1 (and alike for OW).
    """
    _, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    # im2col: windows[b, i, y, x, ky, kx] = xp[b, i, y + ky, x + kx], a view, then subsampled
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    windows = windows[:, :, :: stride[0], :: stride[1]]
    # one integer contraction over (i, ky, kx); int64 in, int64 out
    return np.einsum("biyxkl,oikl->boyx", windows, w, optimize=True)


def sum_pool2d(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Sum over ``kernel`` windows moved by ``stride``: (B, C, H, W) -> (B, C, OH, OW)."""
    windows = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(2, 3))
    return windows[:, :, :: stride[0], :: stride[1]].sum(axis=(4, 5))


def linear(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """y[b, o] = sum_i w[o, i] * x[b, i] on int64."""
    return x @ w.T


def apply_node(node: Node, h: np.ndarray) -> np.ndarray:
    """One synaptic or layout node on a batch of int64 values."""
    if isinstance(node, Conv2d):
        return conv2d(h, node.weight.values, node.stride, node.padding)
    if isinstance(node, SumPool2d):
        return sum_pool2d(h, node.kernel, node.stride)
    if isinstance(node, Flatten):
        return h.reshape(h.shape[0], -1)
    if isinstance(node, Linear):
        return linear(h, node.weight.values)
    raise TypeError(f"not a synaptic or layout node: {type(node).__name__}")  # pragma: no cover - graph checked before


def outside(a: np.ndarray, dtype: IntType) -> int:
    """Number of elements of ``a`` outside ``dtype``'s range."""
    return int(np.count_nonzero((a < dtype.min) | (a > dtype.max)))


# --- the time loop --------------------------------------------------------------------------


def run(
    graph: Graph, x: np.ndarray, timesteps: int, *, record: bool = False, accumulator: IntType | None = None, trace: bool = False
) -> BackendRun:
    """Simulate one batch step by step.

    Args:
        graph: a chain graph, checked by :func:`qsnn_deploy.sim.simulator.simulate`.
        x: int64 input, (B, *shape) for a ``static`` Input or (B, T, *shape) for ``frames``.
        timesteps: T.
        record: also return every LIF layer's spikes at every step.
        accumulator: count synaptic sums A outside this type (None: do not count).
        trace: also return every LIF layer's membrane after every step.

    Raises:
        TargetError: a LIF layer with overflow policy ``error`` overflowed (names the step).
    """
    chain = [(name, node) for name, node in graph.chain() if not isinstance(node, Output)][1:]
    batch = x.shape[0]
    shapes = graph.shapes()
    params = {n: lif.LIFParams.from_node(node, n) for n, node in chain if isinstance(node, LIF)}
    counts = {n: np.zeros((batch, *shapes[n]), np.int64) for n in params}
    acc_over = dict.fromkeys(params, 0)
    spikes = {n: np.zeros((timesteps, batch, *shapes[n]), np.uint8) for n in params} if record else None
    membranes = {n: np.zeros((timesteps, batch, *shapes[n]), np.int64) for n in params} if trace else None

    def chain_step(h: np.ndarray, states: dict[str, lif.LIFState], _: object) -> tuple[dict[str, np.ndarray], dict[str, lif.LIFState]]:
        # one time step through the whole chain; returns every LIF layer's spikes
        out, new = {}, {}
        for name, node in chain:
            if not isinstance(node, LIF):
                h = apply_node(node, h)
                continue
            if accumulator is not None:
                acc_over[name] += outside(h, accumulator)
            h, new[name] = lif.step(h, states[name], params[name])
            out[name] = h
        return out, new

    def collect(t: int, out: dict[str, np.ndarray], states: dict[str, lif.LIFState]) -> None:
        for name, s in out.items():
            counts[name] += s
            if spikes is not None:
                spikes[name][t] = s
            if membranes is not None:
                membranes[name][t] = states[name].v

    initial = {n: lif.initial_state((batch, *shapes[n])) for n in params}
    static = graph.input.encoding == "static"
    inputs = x if static else x.swapaxes(0, 1)  # frames: (B, T, ...) -> per step (B, ...), a view
    states = run_steps(chain_step, inputs, initial, None, timesteps, static=static, sink=collect)
    saturations = {n: int(s.overflows.sum()) for n, s in states.items()}
    return BackendRun(counts, saturations, acc_over, spikes, membranes)


__all__ = ["BackendRun", "apply_node", "conv2d", "linear", "outside", "run", "sum_pool2d"]
