"""QONNX export: ModelWrapper, cleanup, execute_onnx (spikes identical to the simulator), inference cost."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qonnx")

from graph_factory import fmnist_deployable, fmnist_images, make_graph, random_input, run_sim  # noqa: E402
from qonnx.core.datatype import DataType  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.core.onnx_exec import execute_onnx  # noqa: E402
from qonnx.transformation.infer_datatypes import InferDataTypes  # noqa: E402
from qonnx.transformation.infer_shapes import InferShapes  # noqa: E402
from qonnx.util.cleanup import cleanup_model  # noqa: E402
from qonnx.util.inference_cost import inference_cost  # noqa: E402

from qsnn_deploy.errors import ExportError  # noqa: E402
from qsnn_deploy.exporters import export  # noqa: E402
from qsnn_deploy.exporters.qonnx_export import export_qonnx, to_qonnx  # noqa: E402
from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Input, IntTensor, Linear, Output  # noqa: E402
from qsnn_deploy.ir.dtypes import IntType  # noqa: E402

T = 4
BATCH = 2


@functools.cache
def _graph(**kw: Any) -> Graph:
    return make_graph(5, **kw)


def _contract(model: Any) -> dict[str, Any]:
    proto = model.model if isinstance(model, ModelWrapper) else model
    return json.loads({p.key: p.value for p in proto.metadata_props}["qsnn_deploy"])


def run_steps(
    wrapper: ModelWrapper, contract: dict[str, Any], names: tuple[list[str], list[str]], x: np.ndarray, steps: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Drive a step model with execute_onnx; ``names`` are the exported input/output names.

    qonnx's cleanup renames graph inputs and outputs (global_in, global_out_1, ...) but keeps
    their order, so the exported names are mapped by position.
    """
    imap = dict(zip(names[0], [i.name for i in wrapper.graph.input]))
    omap = dict(zip(names[1], [o.name for o in wrapper.graph.output]))
    feeds = {imap[st[k]]: np.zeros((x.shape[0], *st["shape"])) for st in contract["state"] for k in ("v_in", "s_in") if st[k]}
    record: dict[str, list[np.ndarray]] = {st["lif"]: [] for st in contract["state"]}
    counts = np.zeros(0)
    for t in range(steps):
        feeds[imap["x"]] = (x if contract["encoding"] == "static" else x[:, t]).astype(np.float32)
        res = execute_onnx(wrapper, feeds)
        for st in contract["state"]:
            feeds[imap[st["v_in"]]] = res[omap[st["v_out"]]]
            if st["s_in"]:
                feeds[imap[st["s_in"]]] = res[omap[st["s_out"]]]
            record[st["lif"]].append(res[omap[st["s_out"]]].astype(np.uint8))
        out = res[omap["out_spikes"]]
        counts = out if t == 0 else counts + out
    return counts.astype(np.int64), {k: np.stack(v) for k, v in record.items()}


def _io(model: Any) -> tuple[list[str], list[str]]:
    return [i.name for i in model.graph.input], [o.name for o in model.graph.output]


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"static": False, "reset_timing": "immediate"},
        {"state_bits": 12, "input_shift": 0, "overflow": "wrap", "compare": "ge", "reset": "zero"},
        {"pool": 3, "size": 9, "padding": 0},
    ],
    ids=["default", "frames-immediate", "wrap-ge-zero", "pool3x3"],
)
def test_step_model_matches_simulator_before_and_after_cleanup(tmp_path, kw: dict[str, Any]) -> None:
    graph = _graph(**kw)
    x = random_input(graph, BATCH, 3, T)
    path = export_qonnx(graph, tmp_path / "m.onnx", batch=BATCH)
    wrapper = ModelWrapper(str(path))
    contract, names = _contract(wrapper), _io(wrapper)
    ref_counts, ref_spikes = run_sim(graph, x, T)
    counts, spikes = run_steps(wrapper, contract, names, x, T)
    assert _same(spikes, ref_spikes) and np.array_equal(counts, ref_counts)
    clean = cleanup_model(ModelWrapper(str(path)))
    counts, spikes = run_steps(clean, contract, names, x, T)
    assert _same(spikes, ref_spikes) and np.array_equal(counts, ref_counts)


def test_unrolled_model_matches_simulator_after_cleanup(tmp_path) -> None:
    graph = _graph(static=False)
    x = random_input(graph, BATCH, 4, T)
    path = export_qonnx(graph, tmp_path / "u.onnx", timesteps=T, unroll=True, batch=BATCH)
    ref_counts, ref_spikes = run_sim(graph, x, T)
    res = execute_onnx(ModelWrapper(str(path)), {"x": x.astype(np.float32)})
    assert np.array_equal(res["counts"], ref_counts)
    assert _same({k: res[f"{k}_spikes"].astype(np.uint8) for k in ref_spikes}, ref_spikes)
    clean = cleanup_model(ModelWrapper(str(path)))
    res = execute_onnx(clean, {clean.graph.input[0].name: x.astype(np.float32)})
    assert np.array_equal(res[clean.graph.output[0].name], ref_counts)


def test_quant_nodes_datatypes_and_shape_inference() -> None:
    wrapper = ModelWrapper(to_qonnx(_graph()))
    quants = wrapper.get_nodes_by_op_type("Quant")
    assert len(quants) == 2 and all(q.domain == "qonnx.custom_op.general" for q in quants)
    attrs = {a.name: a for a in quants[0].attribute}
    assert attrs["signed"].i == 1 and attrs["narrow"].i == 1 and attrs["rounding_mode"].s == b"ROUND"
    assert [float(wrapper.get_initializer(q.input[3])) for q in quants] == [4.0, 4.0]
    assert wrapper.get_tensor_datatype("x") == DataType["UINT8"]
    wrapper = wrapper.transform(InferShapes()).transform(InferDataTypes())
    assert all(wrapper.get_tensor_datatype(q.output[0]) == DataType["INT4"] for q in quants)
    thresholds = wrapper.get_nodes_by_op_type("MultiThreshold")
    assert len(thresholds) == 2 and all(wrapper.get_tensor_datatype(n.output[0]) == DataType["BINARY"] for n in thresholds)
    assert wrapper.check_all_tensor_shapes_specified()


def test_inference_cost_counts_the_synaptic_macs() -> None:
    graph = _graph()
    cost = inference_cost(ModelWrapper(to_qonnx(graph)), discount_sparsity=False)["total_cost"]
    conv = graph.nodes["conv1"].weight.shape
    fc = graph.nodes["fc"].weight.shape
    conv_out = graph.shapes()["conv1"]
    assert cost["op_mac_UINT8_INT4"] == conv[0] * conv[1] * conv[2] * conv[3] * conv_out[1] * conv_out[2]
    assert cost["op_mac_BINARY_INT4"] == fc[0] * fc[1]  # spikes into the dense layer are binary
    assert cost["total_mem_w_bits"] == 4 * (np.prod(conv) + np.prod(fc))


def test_reexport_is_byte_identical(tmp_path) -> None:
    for unroll in (False, True):
        a = export_qonnx(make_graph(8), tmp_path / "a.onnx", timesteps=T, unroll=unroll)
        b = export(make_graph(8), "qonnx", tmp_path / "b.onnx", timesteps=T, unroll=unroll)  # batch 1 by default
        assert a.read_bytes() == b.read_bytes()


def test_refuses_synaptic_sums_float32_cannot_carry() -> None:
    state = IntType(32)
    lif = {"decay_mul": 1, "decay_shift": 1, "state": state}
    graph = Graph.sequential(
        [
            ("input", Input(shape=(1, 4, 4), dtype=IntType(20))),
            ("conv1", Conv2d(weight=IntTensor(np.full((2, 1, 3, 3), 7), IntType(4)))),
            ("lif1", LIF(threshold=IntTensor([9, 9], state), bias=IntTensor([0, 0], state), **lif)),
            ("flatten", Flatten()),
            ("fc", Linear(weight=IntTensor(np.ones((2, 8), dtype=np.int64), IntType(4)))),
            ("lif2", LIF(threshold=IntTensor([1, 1], state), bias=IntTensor([0, 0], state), **lif)),
            ("output", Output()),
        ]
    )
    with pytest.raises(ExportError, match="float32"):
        to_qonnx(graph)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")

    def fail(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("qsnn_deploy.atomic.os.fsync", fail)
    with pytest.raises(OSError):
        export_qonnx(_graph(), path)
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_fashion_mnist_model_matches_simulator() -> None:
    dep = fmnist_deployable()
    if dep is None:
        pytest.skip("no Fashion-MNIST model (assets/fmnist_int4.pt or runs/fmnist-int4/best.pt)")
    x = fmnist_images(2)
    model = to_qonnx(dep.graph, batch=2)
    wrapper = ModelWrapper(model)
    counts, spikes = run_steps(wrapper, _contract(wrapper), _io(model), x, 8)
    ref_counts, ref_spikes = run_sim(dep.graph, x, 8)
    assert _same(spikes, ref_spikes) and np.array_equal(counts, ref_counts)
    assert "op_mac_UINT8_INT4" in inference_cost(ModelWrapper(model))["total_cost"]
