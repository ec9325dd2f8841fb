"""Xylo: our current-based simulator against SynSense's own XyloSim, step by step, bit by bit.

XyloSim (xylosim 0.1.3 through rockpool 3.1.0) is built from our ``--format xylo`` export
(:func:`~qsnn_deploy.exporters.xylo_export.to_xylo_spec`) and run beside
:func:`qsnn_deploy.sim.cuba_chain.run`. Compared at every step: the spike counts of every hidden
and output neuron, and the synaptic currents and membranes XyloSim records (``record=True``).
Without rockpool/xylosim the tests skip, except in CI (env ``CI`` set), where they fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xylo_adapter import xylosim_class
from xylo_graphs import cuba_graph

from qsnn_deploy.exporters.xylo_export import export_xylo, load_xylo_spec, to_xylo_spec
from qsnn_deploy.ir import Graph
from qsnn_deploy.sim import cuba_chain, lif

T = 12


def _ours(run: cuba_chain.CubaRun, b: int) -> dict[str, np.ndarray]:
    """Our recordings of sample b in XyloSim's layout: (T, N_hidden) hidden blocks side by side, (T, N_out)."""
    names = list(run.spikes)

    def hidden(rec: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([rec[n][:, b] for n in names[:-1]], axis=1)

    out = names[-1]
    return {
        "Spikes": hidden(run.spikes),
        "Vmem": hidden(run.membrane),
        "Isyn": hidden(run.synaptic),
        "out": run.spikes[out][:, b],
        "Vmem_out": run.membrane[out][:, b],
        "Isyn_out": run.synaptic[out][:, b],
    }


def assert_matches_xylosim(graph: Graph, x: np.ndarray, chip: str = "syns63300", spec: dict | None = None) -> cuba_chain.CubaRun:
    """Run both simulators on events ``x`` (B, T, N_in); every recorded array must be identical."""
    sim = xylosim_class(chip).from_specification(**(spec or to_xylo_spec(graph)))
    run = cuba_chain.run(graph, x, x.shape[1], record=True)
    for b in range(len(x)):
        sim.reset_state()
        out, _, rec = sim.evolve(x[b], record=True)
        ours = _ours(run, b)
        theirs = {**rec, "out": out}
        for key, mine in ours.items():
            diff = np.argwhere(np.asarray(theirs[key]) != mine)
            assert diff.size == 0, (
                f"sample {b}: {key} differs first at (step, neuron) {tuple(diff[0])}: XyloSim {theirs[key][tuple(diff[0])]}, ours {mine[tuple(diff[0])]}"
            )
    return run


def _edge_graph(seed: int, sizes: list[int]) -> Graph:
    rng = np.random.default_rng(seed)
    return cuba_graph(
        sizes,
        rng,
        shifts=tuple(int(s) for s in rng.integers(0, 12, 3)),  # up to 11: 127 << 9 and beyond wrap in int16
        bias_range=int(rng.integers(0, 400)),
        threshold_range=(1, int(rng.integers(2, 30000))),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    sizes=st.lists(st.integers(1, 12), min_size=3, max_size=4),
    max_events=st.sampled_from([1, 15, 40, 255]),
)
def test_random_networks_match_xylosim_bit_for_bit(seed: int, sizes: list[int], max_events: int) -> None:
    graph = _edge_graph(seed, sizes)
    x = np.random.default_rng(seed + 1).integers(0, max_events + 1, size=(2, T, sizes[0]))
    assert_matches_xylosim(graph, x)


def test_the_edge_cases_are_exercised_and_match() -> None:
    """Fixed seeds whose runs provably hit saturation, the +-1 decay, both caps and weight-shift wrap."""
    hits = {"saturation": 0, "pm1_decay": 0, "input_cap": 0, "spike_cap_31": 0, "output_fire_once": 0, "weight_wrap": 0}
    for seed in range(6):
        graph = _edge_graph(seed, [16, 24, 20, 6])
        x = np.random.default_rng(seed).integers(0, 40, size=(3, T, 16))
        run = assert_matches_xylosim(graph, x)
        layers = cuba_chain.cuba_layers(graph)
        hits["saturation"] += sum(run.saturations.values())
        hits["input_cap"] += int((x > 15).sum())
        hits["spike_cap_31"] += int(sum((run.spikes[n] == 31).sum() for n, _, _ in layers[:-1]))
        hits["output_fire_once"] += int((run.spikes[layers[-1][0]] == 1).sum())
        for name, linear, node in layers:
            raw = linear.weight.values.astype(np.int64) << node.weight_shift
            hits["weight_wrap"] += int((raw != node.synapse_state.wrap(raw)).sum())
            v_prev = np.concatenate([np.zeros_like(run.membrane[name][:1]), run.membrane[name][:-1]])
            dash = node.dash_mem.values
            hits["pm1_decay"] += int(((v_prev >> dash) == 0)[v_prev != 0].sum())
    assert all(count > 0 for count in hits.values()), hits


def test_the_same_export_runs_on_xylo_audio2() -> None:
    graph = _edge_graph(7, [16, 30, 20, 8])
    x = np.random.default_rng(3).integers(0, 20, size=(2, T, 16))
    assert_matches_xylosim(graph, x, chip="syns61201")


def test_export_file_round_trips_into_xylosim_with_golden_vectors(tmp_path) -> None:
    graph = _edge_graph(11, [16, 20, 10])
    x = np.random.default_rng(5).integers(0, 16, size=(4, T, 16))
    from qsnn_deploy.exporters.golden import GoldenSource

    source = GoldenSource("fmnist-rows", "test", (5, 9, 2, 7))
    path = export_xylo(graph, tmp_path / "spec.npz", target="xylo-imu", timesteps=T, golden=x, golden_source=source)
    with np.load(path) as data:
        keys = set(data.files)
    import inspect

    allowed = set(inspect.signature(xylosim_class("syns63300").from_specification).parameters)
    assert keys - {"chip", "golden_input", "golden_output", "golden_indices", "golden_dataset"} <= allowed
    chip, kwargs, golden = load_xylo_spec(path)
    assert chip == "syns63300" and golden["golden_input"].shape == (4, T, 16) and golden["golden_output"].shape == (4, T, 10)
    assert golden["golden_indices"].tolist() == [5, 9, 2, 7] and str(golden["golden_dataset"]) == "fmnist-rows/test"
    sim = xylosim_class(chip).from_specification(**kwargs)
    for b in range(4):
        sim.reset_state()
        out, _, _ = sim.evolve(golden["golden_input"][b])
        assert np.array_equal(out, golden["golden_output"][b])


def _fmnist_rows(count: int) -> np.ndarray:
    """Fashion-MNIST test images row by row (T = 28), each row's 28 pixels averaged into 16 bins, as 0..15 events."""
    from graph_factory import fmnist_images

    images = fmnist_images(count).reshape(count, 28, 28).astype(np.float64)
    edges = np.linspace(0, 28, 17)
    cover = np.clip(np.minimum(edges[1:, None], np.arange(1, 29)) - np.maximum(edges[:-1, None], np.arange(28)), 0, None)
    binned = images @ (cover / cover.sum(axis=1, keepdims=True)).T  # (N, 28, 16): area-weighted means
    return np.floor(binned / 256 * 16).astype(np.int64)


def test_real_fashion_mnist_rows_through_a_random_quantized_net_match() -> None:
    x = _fmnist_rows(100)
    rng = np.random.default_rng(0)
    graph = cuba_graph([16, 64, 32, 10], rng, weight_range=127, shifts=(3, 4, 4), dash_range=(1, 6), threshold_range=(500, 3000))
    run = assert_matches_xylosim(graph, x)
    assert run.output_counts.sum() > 0  # the net is active on real data, so the comparison says something


def test_accumulation_saturates_after_each_event_in_presynaptic_order() -> None:
    """+30000 then -30000 from I = 0: a plain sum gives 0, the chip's per-event saturation 32767 - 30000."""
    w = np.array([[30000], [30000], [-30000]], np.int64)  # (J, C)
    n = np.array([[1, 1, 1]])
    i, saturated = lif.accumulate_events(np.zeros((1, 1), np.int64), n, w, lif.IntType(16))
    assert i[0, 0] == 32767 - 30000 and saturated[0, 0]
    plain, none = lif.accumulate_events(np.zeros((1, 1), np.int64), np.array([[1, 0, 1]]), w, lif.IntType(16))
    assert plain[0, 0] == 0 and not none[0, 0]


def test_shift_decrement_is_at_least_one_in_magnitude() -> None:
    x = np.array([-32768, -5, -1, 0, 1, 5, 100])
    dec = lif.shift_decrement(x, np.full(7, 4))
    assert dec.tolist() == [-2048, -1, -1, 0, 1, 1, 6]


@pytest.mark.parametrize("n_out", [10])
def test_ten_outputs_do_not_fit_xylo_audio2(n_out: int) -> None:
    from qsnn_deploy.errors import TargetError
    from qsnn_deploy.targets import load_target
    from qsnn_deploy.targets.checks import check_graph

    graph = cuba_graph([16, 20, n_out], np.random.default_rng(0))
    check_graph(graph, load_target("xylo-imu"))
    with pytest.raises(TargetError, match=r"rule outputs_within_limit: output layer 'lif2' has neurons 10 > limit 8 \(excess 2\)"):
        check_graph(graph, load_target("xylo-audio2"))


def test_cuba_graph_exports_as_nir_cubalif_that_nir_and_rockpool_read(tmp_path) -> None:
    import nir

    from qsnn_deploy.exporters.nir_export import export_nir

    graph = cuba_graph([16, 12, 5], np.random.default_rng(2), shifts=(2, 0, 3), dash_range=(0, 6), bias_range=5)
    back = nir.read(export_nir(graph, tmp_path / "m.nir"))
    kinds = {name: type(node).__name__ for name, node in back.nodes.items()}
    assert kinds == {"in": "Input", "fc1": "Affine", "lif1": "CubaLIF", "fc2": "Affine", "lif2": "CubaLIF", "out": "Output"}
    lif1, node = back.nodes["lif1"], graph.nodes["lif1"]
    a = 2.0**-node.dash_syn.values
    assert np.allclose(lif1.tau_syn, 1e-3 / a) and np.allclose(lif1.w_in, (1 - a) / a)
    assert np.array_equal(back.nodes["fc1"].weight, graph.nodes["fc1"].weight.values * 4)  # << weight_shift 2
    xylosim_class("syns63300")  # rockpool present (skip / CI failure as for the XyloSim tests)
    import torch
    from rockpool.nn.modules.torch.nir import from_nir

    net = from_nir(back)
    out = net(torch.zeros((1, 5, 16)))
    out = out[0] if isinstance(out, tuple) else out
    assert tuple(out.shape) == (1, 5, 5)


SHIPPED_XYLO_MODEL = Path(__file__).resolve().parents[2] / "examples" / "fmnist_rows_xylo" / "model.pt"


@pytest.mark.skipif(
    not SHIPPED_XYLO_MODEL.is_file(), reason="issue 17 part B's model (examples/fmnist_rows_xylo/model.pt) is not merged yet"
)
def test_shipped_xylo_model_matches_xylosim_on_100_test_samples() -> None:
    from qsnn_deploy.app.loading import load_deployable
    from qsnn_deploy.data.loaders import load_split

    dep = load_deployable(SHIPPED_XYLO_MODEL, target="xylo-imu")
    split = load_split("fmnist-rows", "test", timesteps=dep.timesteps, limit=100)
    run = assert_matches_xylosim(dep.graph, np.asarray(split.x, np.int64))
    assert run.output_counts.sum() > 0


def test_membrane_at_int16_min_with_dash_zero_keeps_xylosims_int16_negation() -> None:
    """-dec(V) is stored in an int16 by XyloSim: at V = -32768 with dash_mem 0 it wraps to -32768 and V stays there."""
    from qsnn_deploy.ir import CubaLIF, Input, IntTensor, Linear, Output
    from qsnn_deploy.ir.dtypes import IntType

    i16, u8 = IntType(16), IntType(8, signed=False)
    one = lambda v: IntTensor(np.array([v]), i16)  # noqa: E731
    hidden = CubaLIF(
        threshold=one(1000),
        bias=one(-100),
        dash_syn=one(15),
        dash_mem=one(0),
        weight_shift=8,
        input_cap=15,
        state=i16,
        synapse_state=i16,
        spike_cap=31,
    )
    out = CubaLIF(
        threshold=one(5), bias=one(0), dash_syn=one(1), dash_mem=one(1), input_delay=1, input_cap=31, state=i16, synapse_state=i16
    )
    graph = Graph.sequential(
        [
            ("in", Input(shape=(1,), dtype=u8, encoding="frames")),
            ("fc1", Linear(weight=IntTensor(np.array([[-128]]), IntType(8)))),
            ("lif1", hidden),
            ("fc2", Linear(weight=IntTensor(np.array([[1]]), IntType(8)))),
            ("lif2", out),
            ("out", Output()),
        ]
    )
    run = assert_matches_xylosim(graph, np.ones((1, 6, 1), np.int64))
    assert (run.membrane["lif1"][1:, 0, 0] == -32768).all()
