"""The simulator (qsnn_deploy.sim): fast == reference bit for bit, batch independence, counting.

The reference backend is checked against the naive loop in ``graph_factory`` and against
hand-built graphs; the fast backend against the reference on random graphs (hypothesis) for
static and frame inputs, every LIF variant, several batch sizes and each of its arithmetic
paths (float32, float64, int64). SynOps are checked against a brute-force count.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from graph_factory import make_graph, random_input  # noqa: E402
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import oracle_apply, oracle_run  # noqa: E402

from qsnn_deploy.errors import GraphError, QsnnError, TargetError  # noqa: E402
from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Input, IntTensor, Linear, Output, SumPool2d  # noqa: E402
from qsnn_deploy.ir.dtypes import IntType  # noqa: E402
from qsnn_deploy.sim import LayerStats, fast, fast_plan, simulate, simulate_split  # noqa: E402  # noqa: E402
from qsnn_deploy.targets import load_target  # noqa: E402

INT4N = IntType(4, signed=True, narrow=True)
UINT8 = IntType(8, signed=False)
T = 10

needs_fast = pytest.mark.skipif(not fast.available(), reason="fast backend needs torch and numba")


def lif_node(channels: int, threshold: int, *, state: IntType = IntType(24), **kw: Any) -> LIF:
    kw = {"decay_mul": 192, "decay_shift": 8, **kw}  # beta = 3/4
    return LIF(
        threshold=IntTensor(np.full(channels, threshold), state), bias=IntTensor(np.zeros(channels, np.int64), state), state=state, **kw
    )


def weights(rng: np.random.Generator, shape: tuple[int, ...]) -> IntTensor:
    return IntTensor(rng.integers(-7, 8, size=shape), INT4N)


def assert_same(a: Any, b: Any) -> None:
    """Two SimResults agree bit for bit: counts, predictions, stats and every recorded spike."""
    assert np.array_equal(a.counts, b.counts)
    assert np.array_equal(a.predictions, b.predictions)
    assert a.layers == b.layers
    assert a.layer_spike_counts.keys() == b.layer_spike_counts.keys()
    for k in a.layer_spike_counts:
        assert np.array_equal(a.layer_spike_counts[k], b.layer_spike_counts[k])
    if a.spikes is not None or b.spikes is not None:
        assert a.spikes.keys() == b.spikes.keys()
        for k in a.spikes:
            assert a.spikes[k].dtype == b.spikes[k].dtype == np.uint8
            assert np.array_equal(a.spikes[k], b.spikes[k]), k


def both(graph: Graph, x: np.ndarray, steps: int, **kw: Any) -> tuple[Any, Any]:
    ref = simulate(graph, x, steps, backend="reference", record=True, **kw)
    fst = simulate(graph, x, steps, backend="fast", record=True, **kw)
    assert fst.backend == "fast" and ref.backend == "reference"
    assert_same(fst, ref)
    return ref, fst


# --- the reference ------------------------------------------------------------------------------


def test_reference_does_not_import_torch():
    code = (
        "import sys, numpy as np\n"
        "sys.path.insert(0, 'tests')\n"
        "import qsnn_deploy.sim, qsnn_deploy.sim.reference, qsnn_deploy.sim.lif, qsnn_deploy.targets.rules\n"
        "from graph_factory import make_graph, random_input\n"
        "g = make_graph(0)\n"
        "r = qsnn_deploy.sim.simulate(g, random_input(g, 2, 0), 3, backend='reference')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok', r.counts.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


@pytest.mark.parametrize(
    ("static", "options"),
    [
        (True, {}),
        (False, {}),
        (True, {"reset": "zero", "compare": "ge", "rounding": "floor"}),
        (False, {"reset_timing": "immediate", "stride": 2, "padding": 0, "size": 11}),
        (True, {"reset_timing": "immediate", "reset": "zero", "state_bits": 9, "overflow": "wrap", "pool": 3}),
    ],
)
def test_reference_matches_naive_loop(static, options):
    g = make_graph(4, static, **options)
    x = random_input(g, 3, 9, T)
    res = simulate(g, x, T, backend="reference", record=True)
    counts, spikes = oracle_run(g, x, T)
    assert np.array_equal(res.counts, counts)
    for name, s in spikes.items():
        assert np.array_equal(res.spikes[name], s)
        assert np.array_equal(res.layer_spike_counts[name], s.reshape(T, 3, -1).sum(axis=(0, 2)))
    assert res.layers[-1].spikes == int(counts.sum())
    assert np.array_equal(res.predictions, np.argmax(counts, axis=1))


# --- fast == reference ---------------------------------------------------------------------------

graph_options = st.fixed_dictionaries(
    {
        "static": st.booleans(),
        "kernel": st.sampled_from([1, 3, 5]),
        "padding": st.sampled_from([0, 1, 2]),
        "stride": st.sampled_from([1, 2]),
        "pool": st.sampled_from([1, 2, 3]),
        "conv_channels": st.sampled_from([1, 4, 8]),
        "in_channels": st.sampled_from([1, 2]),
        "state_bits": st.sampled_from([10, 16, 24]),
        "decay_shift": st.sampled_from([0, 4, 16]),
        "input_shift": st.sampled_from([0, 3]),
        "reset": st.sampled_from(["subtract", "zero"]),
        "compare": st.sampled_from(["gt", "ge"]),
        "reset_timing": st.sampled_from(["delayed", "immediate"]),
        "rounding": st.sampled_from(["floor", "half_up"]),
        "overflow": st.sampled_from(["saturate", "wrap"]),
    }
)


@needs_fast
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph_options, st.integers(0, 10_000), st.sampled_from([1, 2, 5]), st.integers(1, 9))
def test_fast_equals_reference_on_random_graphs(options, seed, batch, steps):
    size = 9 if options["stride"] == 1 else 12
    if options["padding"] * 2 >= options["kernel"] + 1:
        options["padding"] = 0
    g = make_graph(seed, size=size, **options)
    x = random_input(g, batch, seed + 1, steps)
    both(g, x, steps)


@needs_fast
@pytest.mark.parametrize("reset_timing", ["delayed", "immediate"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("compare", ["gt", "ge"])
def test_fast_equals_reference_for_every_lif_variant(reset_timing, reset, compare):
    g = make_graph(21, False, reset_timing=reset_timing, reset=reset, compare=compare, rounding="floor", state_bits=12)
    assert all(seg.float_lif for seg in fast_plan._plan(g))  # the float64 kernel, not the NumPy fallback
    ref, _ = both(g, random_input(g, 3, 5, T), T)
    assert all(layer.spikes > 0 for layer in ref.layers)


@needs_fast
@pytest.mark.parametrize("static", [True, False])
def test_results_do_not_depend_on_batching(static, monkeypatch):
    g = make_graph(11, static, kernel=5, padding=0, size=12)
    x = random_input(g, 5, 3, T)
    whole_ref, whole = both(g, x, T)
    singles = [simulate(g, x[i : i + 1], T, backend="fast", record=True) for i in range(5)]
    assert np.array_equal(np.concatenate([s.counts for s in singles]), whole.counts)
    for name in whole.spikes:
        assert np.array_equal(np.concatenate([s.spikes[name] for s in singles], axis=1), whole.spikes[name])
    totals = singles[0].layers
    for s in singles[1:]:
        totals = [a.merged(b) for a, b in zip(totals, s.layers)]
    assert totals == whole.layers
    # one step per chunk: the LIF state is carried from chunk to chunk
    monkeypatch.setattr(fast, "_CHUNK_BYTES", 1)
    assert_same(simulate(g, x, T, backend="fast", record=True), whole_ref)


def fmnist_like(seed: int) -> Graph:
    """The Fashion-MNIST architecture with random int4 weights (conv k5 + pool 2, x2; dense 1024 -> 10)."""
    rng = np.random.default_rng(seed)
    return Graph.sequential(
        [
            ("input", Input(shape=(1, 28, 28), dtype=UINT8)),
            ("conv1", Conv2d(weight=weights(rng, (16, 1, 5, 5)))),
            ("pool1", SumPool2d(kernel=(2, 2), stride=(2, 2))),
            ("lif1", lif_node(16, 20_000)),
            ("conv2", Conv2d(weight=weights(rng, (64, 16, 5, 5)))),
            ("pool2", SumPool2d(kernel=(2, 2), stride=(2, 2))),
            ("lif2", lif_node(64, 20)),
            ("flatten", Flatten()),
            ("fc", Linear(weight=weights(rng, (10, 1024)))),
            ("lif3", lif_node(10, 6)),
            ("output", Output()),
        ]
    )


@needs_fast
def test_fmnist_architecture_fast_equals_reference():
    g = fmnist_like(0)
    plan = fast_plan._plan(g)
    # pool folded into a 6x6 stride-2 kernel, float32 proven exact, dense columns permuted to NHWC
    assert [s.dtype for s in plan] == ["float32"] * 3
    assert plan[0].static and tuple(plan[0].stages[0].weight.shape) == (16, 1, 6, 6) and plan[0].stages[0].stride == (2, 2)
    assert [s.kind for s in plan[2].stages] == ["flatten_nhwc", "linear"]
    x = np.random.default_rng(1).integers(0, 256, size=(3, 1, 28, 28))
    ref, _ = both(g, x, 8)
    assert all(layer.spikes > 0 for layer in ref.layers)


@needs_fast
def test_float64_path_for_wide_inputs():
    # UINT16 event counts x 25 int4 weights x 4: the bound exceeds 2^24, so float64 is used
    rng = np.random.default_rng(2)
    g = Graph.sequential(
        [
            ("input", Input(shape=(2, 10, 10), dtype=IntType(16, signed=False), encoding="frames")),
            ("conv", Conv2d(weight=weights(rng, (3, 2, 5, 5)), padding=(2, 2))),
            ("pool", SumPool2d(kernel=(2, 2), stride=(2, 2))),
            ("lif", lif_node(3, 2_000_000, state=IntType(32))),
            ("output", Output()),
        ]
    )
    assert fast_plan._plan(g)[0].dtype == "float64"
    x = rng.integers(0, 2**16, size=(3, 6, 2, 10, 10))
    ref, _ = both(g, x, 6)
    assert ref.layers[0].spikes > 0


@needs_fast
def test_float32_not_trusted_when_torch_may_narrow_it():
    import torch

    g = make_graph(12)
    x = random_input(g, 2, 1)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")  # would allow bf16/tf32 products
        assert {seg.dtype for seg in fast_plan._cached_plan(g)} == {"float64"}
        both(g, x, T)
    finally:
        torch.set_float32_matmul_precision(before)
    assert {seg.dtype for seg in fast_plan._cached_plan(g)} == {"float32"}


@needs_fast
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_int64_path_at_the_edges_of_int64(overflow):
    # INT62 frames straight into a 48-bit LIF with a 30-bit input shift: sums far beyond the
    # state type, beyond float64's exact range, so the fast backend takes its int64 path
    g = Graph.sequential(
        [
            ("input", Input(shape=(4,), dtype=IntType(62), encoding="frames")),
            (
                "lif",
                LIF(
                    threshold=IntTensor.of([1, 5, 2**46, 2**47 - 1], "INT48"),
                    bias=IntTensor.of([0, -3, 7, 2**40], "INT48"),
                    decay_mul=2**30 - 1,
                    decay_shift=30,
                    input_shift=30,
                    state=IntType(48),
                    overflow=overflow,
                ),
            ),
            ("output", Output()),
        ]
    )
    assert fast_plan._plan(g)[0].dtype == "int64"
    t = IntType(62)
    x = np.random.default_rng(3).choice([t.min, t.max, 0, 1, -1, 2**20, -(2**33), 12345], size=(2, 12, 4))
    ref, _ = both(g, x, 12)
    assert ref.layers[0].saturations > 0


@needs_fast
def test_overflow_error_policy_names_the_layer():
    g = make_graph(5, state_bits=8, overflow="error", input_shift=4)
    x = random_input(g, 2, 0)
    for backend in ("reference", "fast"):
        with pytest.raises(TargetError, match=r"layer 'lif\d'.*INT8.*'error'"):
            simulate(g, x, T, backend=backend)


# --- counting ------------------------------------------------------------------------------------


def spiking_chain(static: bool = True, in_type: IntType = UINT8) -> Graph:
    rng = np.random.default_rng(7)
    return Graph.sequential(
        [
            ("input", Input(shape=(1, 9, 9), dtype=in_type, encoding="static" if static else "frames")),
            ("conv1", Conv2d(weight=weights(rng, (3, 1, 3, 3)), padding=(1, 1))),
            ("lif1", lif_node(3, 400 if in_type.bits > 1 else 3)),
            ("conv2", Conv2d(weight=weights(rng, (5, 3, 3, 3)), stride=(2, 2), padding=(1, 1))),
            ("lif2", lif_node(5, 6)),
            ("flatten", Flatten()),
            ("fc", Linear(weight=weights(rng, (4, 125)))),
            ("lif3", lif_node(4, 3)),
            ("output", Output()),
        ]
    )


def brute_force_fan_out(h: int, w: int, size: int, kernel: int, stride: int, pad: int) -> int:
    """Output positions whose receptive field contains input pixel (h, w), by enumeration."""
    out = (size + 2 * pad - kernel) // stride + 1
    return sum(
        1
        for oy in range(out)
        for ox in range(out)
        for ky in range(kernel)
        for kx in range(kernel)
        if oy * stride - pad + ky == h and ox * stride - pad + kx == w
    )


@pytest.mark.parametrize("backend", ["reference", pytest.param("fast", marks=needs_fast)])
def test_synops_border_aware_against_brute_force(backend):
    g = spiking_chain()
    x = np.random.default_rng(0).integers(0, 256, size=(3, 1, 9, 9))
    res = simulate(g, x, T, backend=backend, record=True)
    s1 = res.spikes["lif1"]  # (T, B, 3, 9, 9)
    assert s1.sum() > 0 and res.spikes["lif2"].sum() > 0
    brute = 0
    for h in range(9):
        for w in range(9):
            brute += int(s1[:, :, :, h, w].sum()) * 5 * brute_force_fan_out(h, w, 9, 3, 2, 1)
    stats = {layer.name: layer for layer in res.layers}
    assert stats["lif2"].synops == brute
    assert stats["lif3"].synops == int(res.spikes["lif2"].sum()) * 4
    # the 8-bit image is not spikes: its conv is dense MACs, computed once per sample when static
    assert stats["lif1"].synops == 0
    assert stats["lif1"].dense_macs == 3 * (3 * 9 * 9 * 1 * 3 * 3)
    assert stats["lif2"].dense_macs == stats["lif3"].dense_macs == 0


def test_dense_macs_per_step_for_frames_and_synops_for_binary_inputs():
    x = np.random.default_rng(1).integers(0, 2, size=(2, T, 1, 9, 9))
    frames = simulate(spiking_chain(False), x, T, backend="reference")
    assert frames.layers[0].dense_macs == 2 * T * (3 * 9 * 9 * 9) and frames.layers[0].synops == 0
    binary = simulate(spiking_chain(False, IntType(1, signed=False)), x, T, backend="reference")
    events = x.sum(axis=(0, 1))[0]
    expect = sum(int(events[h, w]) * 3 * brute_force_fan_out(h, w, 9, 3, 1, 1) for h in range(9) for w in range(9))
    assert binary.layers[0].synops == expect and binary.layers[0].dense_macs == 0


def test_memory_bits():
    stats = simulate(spiking_chain(), np.zeros((1, 1, 9, 9), np.int64), 2, backend="reference").layers
    assert [(s.neurons, s.weight_bits, s.state_bits, s.param_bits) for s in stats] == [
        (243, 27 * 4, 243 * 24, 2 * 3 * 24),
        (125, 135 * 4, 125 * 24, 2 * 5 * 24),
        (4, 500 * 4, 4 * 24, 2 * 4 * 24),
    ]
    assert stats[0].memory_bits == 27 * 4 + 243 * 24 + 2 * 3 * 24
    assert [s.op for s in stats] == ["Conv2d+LIF", "Conv2d+LIF", "Flatten+Linear+LIF"]


@pytest.mark.parametrize("backend", ["reference", pytest.param("fast", marks=needs_fast)])
def test_accumulator_overflows_counted_not_altered(backend):
    g = make_graph(8, kernel=3)
    x = random_input(g, 2, 4)
    target = load_target("int4-core").with_changes(accumulator=IntType(10))
    res = simulate(g, x, T, backend=backend, target=target)
    plain = simulate(g, x, T, backend=backend)
    assert np.array_equal(res.counts, plain.counts)
    # independent count: the static layer-1 sums are the same at all T steps
    a1 = oracle_apply(g.nodes["pool1"], oracle_apply(g.nodes["conv1"], x))
    assert res.layers[0].accumulator_overflows == T * int(((a1 < -512) | (a1 > 511)).sum()) > 0
    assert plain.layers[0].accumulator_overflows == 0


# --- the API -------------------------------------------------------------------------------------


def test_input_validation():
    g = make_graph(0)
    x = random_input(g, 2, 0)
    with pytest.raises(QsnnError, match="timesteps"):
        simulate(g, x, 0)
    with pytest.raises(GraphError, match="input must be"):
        simulate(g, x[:, 0], T)
    with pytest.raises(GraphError, match="integers"):
        simulate(g, x.astype(np.float32), T)
    with pytest.raises(GraphError, match=r"\[0, 256\].*UINT8"):
        simulate(g, np.where(x > 100, 256, x), T)
    with pytest.raises(QsnnError, match="empty"):
        simulate(g, x[:0], T)
    with pytest.raises(QsnnError, match="backend"):
        simulate(g, x, T, backend="gpu")
    with pytest.raises(TargetError, match="input type UINT4"):
        simulate(g, x, T, target=load_target("int4-core").with_changes(input=IntType(4, signed=False)))
    frames = make_graph(0, static=False)
    with pytest.raises(GraphError, match=r"\(B, T, \*shape\)"):
        simulate(frames, random_input(frames, 2, 0, T - 1), T)


def test_output_must_count_lif_spikes():
    rng = np.random.default_rng(0)
    g = Graph.sequential([("input", Input(shape=(3,), dtype=UINT8)), ("fc", Linear(weight=weights(rng, (2, 3)))), ("output", Output())])
    with pytest.raises(GraphError, match="LIF"):
        simulate(g, np.zeros((1, 3), np.int64), 2)


def test_predictions_break_ties_to_the_lowest_index():
    res = simulate(make_graph(0), np.zeros((2, 1, 8, 8), np.int64), 1, backend="reference")
    counts = res.counts
    assert np.array_equal(res.predictions, [int(np.flatnonzero(r == r.max())[0]) for r in counts])
    assert res.spikes is None


@pytest.mark.parametrize("backend", ["reference", pytest.param("auto", marks=needs_fast)])
def test_simulate_split_totals(backend):
    g = make_graph(6)
    x = random_input(g, 7, 2).astype(np.uint8)
    y = np.arange(7) % 6
    whole = simulate(g, x, T, backend=backend)
    rep = simulate_split(g, x, y, T, batch_size=3, backend=backend, progress=False)
    assert rep.samples == 7 and np.array_equal(rep.predictions, whole.predictions)
    assert np.array_equal(rep.counts, whole.counts)
    assert rep.layers == whole.layers
    assert rep.accuracy == pytest.approx(float((whole.predictions == y).mean()))
    limited = simulate_split(g, x, y, T, batch_size=2, limit=4, backend=backend, progress=False)
    assert limited.samples == 4 and np.array_equal(limited.predictions, whole.predictions[:4])


def test_layer_stats_merge():
    a = LayerStats("l", "LIF", 4, spikes=1, synops=2, dense_macs=3, saturations=4, accumulator_overflows=5, weight_bits=6)
    b = a.merged(a)
    assert (b.spikes, b.synops, b.dense_macs, b.saturations, b.accumulator_overflows, b.weight_bits) == (2, 4, 6, 8, 10, 6)
    with pytest.raises(QsnnError):
        a.merged(LayerStats("other", "LIF", 4))
