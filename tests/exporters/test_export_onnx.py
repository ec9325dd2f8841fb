"""Plain ONNX export: onnx.checker (full), onnxruntime spikes identical to the simulator."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from graph_factory import fmnist_deployable, fmnist_images, make_graph, random_input, run_sim  # noqa: E402

from qsnn_deploy.errors import ExportError, TargetError  # noqa: E402
from qsnn_deploy.exporters import export  # noqa: E402
from qsnn_deploy.exporters.onnx_plain import export_onnx, run_onnx, to_onnx  # noqa: E402

T = 6
CONFIGS = {
    "default": {},
    "frames": {"static": False},
    "zero-reset": {"reset": "zero"},
    "immediate": {"reset_timing": "immediate"},
    "immediate-zero-ge": {"reset_timing": "immediate", "reset": "zero", "compare": "ge"},
    "floor": {"rounding": "floor"},
    "saturating": {"state_bits": 12, "input_shift": 0},
    "wrapping": {"state_bits": 12, "input_shift": 0, "overflow": "wrap"},
    "strided": {"padding": 0, "stride": 2, "kernel": 2, "size": 9},
    "no-leak": {"beta": 1.0},
    "no-memory": {"beta": 0.0, "decay_shift": 0},
}


@functools.cache
def _graph(config: str, seed: int = 3):
    return make_graph(seed, **CONFIGS[config])


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("unroll", [False, True], ids=["step", "unrolled"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_spikes_identical_to_simulator_at_every_step(config: str, unroll: bool) -> None:
    graph = _graph(config)
    x = random_input(graph, 4, 11, T)
    model = to_onnx(graph, timesteps=T, unroll=unroll)
    onnx.checker.check_model(model, full_check=True)
    counts, spikes = run_onnx(model, x, T)
    ref_counts, ref_spikes = run_sim(graph, x, T)
    assert _same(spikes, ref_spikes)  # (T, B, ...) per LIF layer: every step, every neuron
    assert np.array_equal(counts, ref_counts)


def test_overflow_is_exercised_by_the_small_state_configs() -> None:
    x = random_input(_graph("saturating"), 4, 11, T)
    _, sat = run_sim(_graph("saturating"), x, T)
    _, wrap = run_sim(_graph("wrapping"), x, T)
    assert not _same(sat, wrap)  # so the Clip / wrap ops are really tested above


@pytest.mark.parametrize("seed", range(4))
def test_random_graphs_step_mode(seed: int) -> None:
    rng = np.random.default_rng(seed)
    graph = make_graph(
        100 + seed,
        static=bool(seed % 2),
        conv_channels=int(rng.integers(1, 5)),
        n_out=int(rng.integers(1, 8)),
        decay_shift=int(rng.integers(1, 17)),
        beta=float(rng.uniform(0.5, 1.0)),
        input_shift=int(rng.integers(0, 4)),
    )
    x = random_input(graph, 3, seed, T)
    counts, spikes = run_onnx(to_onnx(graph), x, T)
    ref_counts, ref_spikes = run_sim(graph, x, T)
    assert _same(spikes, ref_spikes) and np.array_equal(counts, ref_counts)


def test_step_model_interface() -> None:
    graph = _graph("default")
    model = to_onnx(graph)
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    assert inputs == {"x", "lif1_v_in", "lif1_s_in", "lif2_v_in", "lif2_s_in"}
    assert outputs == {"lif1_v_out", "lif1_s_out", "lif2_v_out", "lif2_s_out", "out_spikes"}
    assert model.opset_import[0].version >= 17
    immediate = to_onnx(_graph("immediate"))
    assert "lif1_s_in" not in {i.name for i in immediate.graph.input}  # immediate reset keeps no spike state
    used = {op.op_type for op in model.graph.node}
    assert {"Floor", "Clip", "Greater", "MatMul", "Gather"} <= used and "Conv" not in used


def test_overflow_error_mode_flags_what_the_simulator_refuses() -> None:
    graph = make_graph(3, state_bits=12, input_shift=0, overflow="error")
    x = random_input(graph, 4, 11, T)
    with pytest.raises(TargetError, match="overflow"):
        run_sim(graph, x, T)
    model = to_onnx(graph, timesteps=T, unroll=True)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    res = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x.astype(np.float64)})))
    assert res["lif1_overflow"] == 1.0
    calm = make_graph(3, overflow="error")
    counts, spikes = run_onnx(to_onnx(calm, timesteps=T, unroll=True), x, T)
    ref_counts, ref_spikes = run_sim(calm, x, T)
    assert _same(spikes, ref_spikes) and np.array_equal(counts, ref_counts)


def test_refuses_graphs_float64_cannot_carry_exactly() -> None:
    with pytest.raises(ExportError, match="2\\^53"):
        to_onnx(make_graph(0, state_bits=48, decay_shift=16))


def test_unroll_needs_timesteps() -> None:
    with pytest.raises(ExportError, match="timesteps"):
        to_onnx(_graph("default"), unroll=True)


@pytest.mark.parametrize("unroll", [False, True])
def test_reexport_is_byte_identical(tmp_path, unroll: bool) -> None:
    a = export_onnx(make_graph(9), tmp_path / "a.onnx", timesteps=T, unroll=unroll)
    b = export(make_graph(9), "onnx", tmp_path / "b.onnx", timesteps=T, unroll=unroll)
    assert a.read_bytes() == b.read_bytes()
    counts, _ = run_onnx(b, random_input(make_graph(9), 2, 1, T), T)  # the file itself runs
    assert counts.shape == (2, 6)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")

    def fail(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("qsnn_deploy.atomic.os.fsync", fail)
    with pytest.raises(OSError):
        export_onnx(_graph("default"), path)
    with pytest.raises(OSError):
        export_onnx(_graph("default"), tmp_path / "new.onnx")
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_fashion_mnist_model_is_bit_exact() -> None:
    dep = fmnist_deployable()
    if dep is None:
        pytest.skip("no Fashion-MNIST model (assets/fmnist_int4.pt or runs/fmnist-int4/best.pt)")
    x = fmnist_images(4)
    steps = min(dep.timesteps, 30)
    counts, spikes = run_onnx(to_onnx(dep.graph), x, steps)
    ref_counts, ref_spikes = run_sim(dep.graph, x, steps)
    assert _same(spikes, ref_spikes) and np.array_equal(counts, ref_counts)
