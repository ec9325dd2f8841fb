"""Small random integer graphs for tests: conv -> sumpool -> LIF -> flatten -> linear -> LIF.

``make_graph(seed)`` is deterministic in ``seed`` and its keyword options. Weights are
random INT4_NARROW; thresholds are calibrated (with the tiny, naive integer loop below, a
transcription of the LIF docstring in :mod:`qsnn_deploy.ir.nodes`, kept independent of the
simulator) so that each spiking layer fires in roughly 5-40 % of its neuron-steps.
``random_input`` draws matching inputs; ``run_sim`` runs the bit-accurate simulator and
``reference_run`` the naive loop over a whole graph (an independent cross-check of it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Input, IntTensor, Linear, Output, SumPool2d
from qsnn_deploy.ir.dtypes import IntType

WEIGHT = IntType(4, signed=True, narrow=True)
CALIBRATION_STEPS = 8


def make_graph(
    seed: int,
    static: bool = True,
    *,
    size: int = 8,
    in_channels: int = 1,
    conv_channels: int = 4,
    kernel: int = 3,
    padding: int = 1,
    stride: int = 1,
    pool: int = 2,
    n_out: int = 6,
    state_bits: int = 24,
    decay_shift: int = 8,
    beta: float = 0.875,
    input_shift: int = 2,
    reset: str = "subtract",
    compare: str = "gt",
    reset_timing: str = "delayed",
    rounding: str = "half_up",
    overflow: str = "saturate",
    target_rate: float = 0.2,
) -> Graph:
    """A random chain Input -> Conv2d -> SumPool2d -> LIF -> Flatten -> Linear -> LIF -> Output.

    ``static`` inputs are UINT8 pixels (the same sample every step); otherwise the input is
    ``frames`` of UINT2 event counts.
    """
    rng = np.random.default_rng(seed)
    in_type = IntType(8, signed=False) if static else IntType(2, signed=False)
    state = IntType(state_bits)
    lif_kw: dict[str, Any] = dict(
        decay_mul=int(round(beta * 2**decay_shift)),
        decay_shift=decay_shift,
        input_shift=input_shift,
        state=state,
        reset=reset,
        compare=compare,
        reset_timing=reset_timing,
        rounding=rounding,
        overflow="saturate" if overflow == "error" else overflow,  # calibration must not stop on overflow
    )
    inp = Input(shape=(in_channels, size, size), dtype=in_type, encoding="static" if static else "frames")
    w1 = rng.integers(-7, 8, size=(conv_channels, in_channels, kernel, kernel))
    conv = Conv2d(weight=IntTensor(w1, WEIGHT), stride=(stride, stride), padding=(padding, padding))
    sp = SumPool2d(kernel=(pool, pool), stride=(pool, pool))
    head = [("input", inp), ("conv1", conv), ("pool1", sp)]
    x = _random_values(inp, 8, seed + 1000, CALIBRATION_STEPS)
    a1 = _layer_sums(head[1:], x)
    lif1 = _calibrated_lif(a1, rng, lif_kw, target_rate)
    s1 = _lif_loop(lif1, a1)
    n1 = int(np.prod(s1.shape[2:]))
    w2 = rng.integers(-7, 8, size=(n_out, n1))
    w2[:, : max(1, n1 // 8)] = np.abs(w2[:, : max(1, n1 // 8)])  # some excitatory drive for every output
    a2 = np.einsum("oi,tbi->tbo", w2, s1.reshape(*s1.shape[:2], n1))
    lif2 = _calibrated_lif(a2, rng, lif_kw, target_rate)
    lif1, lif2 = (dataclasses.replace(n, overflow=overflow) for n in (lif1, lif2))
    return Graph.sequential(
        [
            *head,
            ("lif1", lif1),
            ("flatten", Flatten()),
            ("fc", Linear(weight=IntTensor(w2, WEIGHT))),
            ("lif2", lif2),
            ("output", Output()),
        ],
        {"producer": "tests.graph_factory", "seed": seed},
    )


def random_input(graph: Graph, batch: int, seed: int, timesteps: int | None = None) -> np.ndarray:
    """Random integer input: (B, *shape) for static graphs, (B, T, *shape) for frames."""
    return _random_values(graph.input, batch, seed, timesteps)


def _random_values(node: Input, batch: int, seed: int, timesteps: int | None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (batch, *node.shape) if node.encoding == "static" else (batch, timesteps or 1, *node.shape)
    return rng.integers(node.dtype.min, node.dtype.max + 1, size=shape).astype(np.int64)


def _calibrated_lif(a: np.ndarray, rng: np.random.Generator, kw: dict[str, Any], target: float) -> LIF:
    """Pick per-channel thresholds so the layer fires at about ``target`` on the sums ``a``."""
    channels = a.shape[2]
    state: IntType = kw["state"]
    current = (a.astype(np.float64) * 2 ** kw["input_shift"]).swapaxes(0, 2).reshape(channels, -1)
    spread = np.maximum(np.quantile(np.abs(current), 0.75, axis=1), 1.0)
    bias = np.clip(np.rint(rng.uniform(-0.1, 0.2, channels) * spread), state.min, state.max).astype(np.int64)
    lo, hi = 0.05, 50.0
    for _ in range(14):  # bisection on a global threshold gain (rate falls as the gain rises)
        gain = float(np.sqrt(lo * hi))
        lif = _lif(spread * gain, bias, kw)
        rate = float(_lif_loop(lif, a).mean())
        lo, hi = (gain, hi) if rate > target else (lo, gain)
    return _lif(spread * float(np.sqrt(lo * hi)), bias, kw)


def _lif(theta: np.ndarray, bias: np.ndarray, kw: dict[str, Any]) -> LIF:
    state: IntType = kw["state"]
    thr = np.clip(np.rint(theta), 1, state.max).astype(np.int64)
    return LIF(threshold=IntTensor(thr, state), bias=IntTensor(bias, state), **kw)


def _layer_sums(nodes: list[tuple[str, Any]], x: np.ndarray) -> np.ndarray:
    """(T, B, ...) synaptic sums of a conv/pool head on input x (static or frames)."""
    steps = x.swapaxes(0, 1) if x.ndim == 5 else np.broadcast_to(x, (CALIBRATION_STEPS, *x.shape))
    out = []
    for xt in steps:
        v = xt
        for _, node in nodes:
            v = _apply(node, v)
        out.append(v)
    return np.stack(out)


def _lif_loop(node: LIF, a: np.ndarray) -> np.ndarray:
    return np.stack(_run_lif(node, a))


# --- the naive integer loop used for calibration --------------------------------------------


def _conv(w: np.ndarray, x: np.ndarray, stride: tuple[int, int], padding: tuple[int, int]) -> np.ndarray:
    o, i, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    ho = (xp.shape[2] - kh) // stride[0] + 1
    wo = (xp.shape[3] - kw) // stride[1] + 1
    y = np.zeros((x.shape[0], o, ho, wo), dtype=np.int64)
    for r in range(ho):
        for c in range(wo):
            patch = xp[:, :, r * stride[0] : r * stride[0] + kh, c * stride[1] : c * stride[1] + kw]
            y[:, :, r, c] = np.einsum("bikl,oikl->bo", patch, w)
    return y


def _apply(node: Any, x: np.ndarray) -> np.ndarray:
    if isinstance(node, Conv2d):
        return _conv(node.weight.values, x, node.stride, node.padding)
    if isinstance(node, SumPool2d):
        (kh, kw), (sh, sw) = node.kernel, node.stride
        ho, wo = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
        y = np.zeros((*x.shape[:2], ho, wo), dtype=np.int64)
        for r in range(ho):
            for c in range(wo):
                y[:, :, r, c] = x[:, :, r * sh : r * sh + kh, c * sw : c * sw + kw].sum(axis=(2, 3))
        return y
    if isinstance(node, Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(node, Linear):
        return x @ node.weight.values.T
    raise TypeError(type(node).__name__)  # pragma: no cover - test helper


def _run_lif(node: LIF, a: np.ndarray) -> list[np.ndarray]:
    """Spikes of one LIF layer over T steps of synaptic sums ``a`` (T, B, C, ...)."""
    chan = (1, -1) + (1,) * (a.ndim - 3)
    thr = node.threshold.values.reshape(chan)
    bias = node.bias.values.reshape(chan)
    r = 0 if node.rounding == "floor" or node.decay_shift == 0 else 1 << (node.decay_shift - 1)
    v = np.zeros(a.shape[1:], dtype=np.int64)
    s = np.zeros_like(v)
    out = []

    def decay(u: np.ndarray) -> np.ndarray:
        return (u * node.decay_mul + r) >> node.decay_shift

    def ovf(u: np.ndarray) -> np.ndarray:
        if node.overflow == "saturate":
            return node.state.saturate(u)
        if node.overflow == "wrap":
            return node.state.wrap(u)
        if not node.state.contains(u):
            raise OverflowError("membrane overflow")
        return u

    for at in a:
        current = (at.astype(np.int64) << node.input_shift) + bias
        if node.reset_timing == "delayed":
            if node.reset == "subtract":
                v = ovf(decay(v) + current - s * thr)
            else:
                v = ovf(decay(v * (1 - s)) + current)
            s = (v > thr if node.compare == "gt" else v >= thr).astype(np.int64)
        else:
            v = ovf(decay(v) + current)
            s = (v > thr if node.compare == "gt" else v >= thr).astype(np.int64)
            v = v - s * thr if node.reset == "subtract" else v * (1 - s)
        out.append(s)
    return out


def reference_run(graph: Graph, x: np.ndarray, timesteps: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(counts (B, n_out), {lif: spikes (T, B, ...)}) by the naive integer loop.

    ``x`` is (B, *shape) for static inputs and (B, T, *shape) for frames. An independent
    cross-check of the simulator; ``overflow="error"`` raises OverflowError.
    """
    chain = graph.chain()
    static = graph.input.encoding == "static"
    values = [np.asarray(x if static else x[:, t], dtype=np.int64) for t in range(timesteps)]
    spikes: dict[str, np.ndarray] = {}
    for name, node in chain[1:-1]:
        if isinstance(node, LIF):
            values = _run_lif(node, np.stack(values))
            spikes[name] = np.stack(values).astype(np.uint8)
        else:
            values = [_apply(node, v) for v in values]
    return np.stack(values).sum(axis=0), spikes


def run_sim(graph: Graph, x: np.ndarray, timesteps: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Output counts (B, n_out) and per-LIF spikes (T, B, ...) from the bit-accurate simulator."""
    from qsnn_deploy.sim import simulate

    res = simulate(graph, x, timesteps, backend="reference", record=True)
    return np.asarray(res.counts), {k: np.asarray(v) for k, v in res.spikes.items()}


def fmnist_deployable() -> Any:
    """The lead's frozen Fashion-MNIST model (shipped asset, else the training run), or None."""
    from pathlib import Path

    from qsnn_deploy.app.loading import load_deployable

    root = Path(__file__).resolve().parents[1]
    for candidate in (root / "qsnn_deploy" / "assets" / "fmnist_int4.pt", root / "runs" / "fmnist-int4" / "best.pt"):
        if candidate.is_file():
            return load_deployable(candidate, target="int4-core")
    return None


def fmnist_images(count: int) -> np.ndarray:
    """The first ``count`` images of the Fashion-MNIST test set (or the packaged subset)."""
    from qsnn_deploy.data.loaders import load_fmnist_test_or_subset

    split, _ = load_fmnist_test_or_subset(None, count)
    return split.x.astype(np.int64)
