"""Small random integer graphs for tests: conv -> sumpool -> LIF -> flatten -> linear -> LIF.

``make_graph(seed)`` is deterministic in ``seed`` and its keyword options. Weights are
random INT4_NARROW; thresholds are calibrated (with the naive integer loop of :mod:`oracles`, a
transcription of docs/arithmetic.md kept independent of the simulator) so that each spiking layer fires in roughly 5-40 % of its neuron-steps.
``random_input`` draws matching inputs; ``run_sim`` runs the bit-accurate simulator and
:func:`oracles.oracle_run` the naive loop over a whole graph (an independent cross-check of it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from oracles import oracle_apply, oracle_lif_layer

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
            v = oracle_apply(node, v)
        out.append(v)
    return np.stack(out)


def _lif_loop(node: LIF, a: np.ndarray) -> np.ndarray:
    return np.stack(oracle_lif_layer(node, a))


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
