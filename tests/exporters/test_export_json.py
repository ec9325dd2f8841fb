"""Integer JSON graph: schema (jsonschema), round trip, golden vectors, hostile documents."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

jsonschema = pytest.importorskip("jsonschema")

from graph_factory import make_graph, random_input  # noqa: E402

from qsnn_deploy.errors import ExportError, GraphError  # noqa: E402
from qsnn_deploy.exporters import FORMATS, export  # noqa: E402
from qsnn_deploy.exporters import json_graph as jg  # noqa: E402
from qsnn_deploy.ir import NODE_TYPES  # noqa: E402
from qsnn_deploy.ir.arithmetic import NeuronArithmetic  # noqa: E402
from qsnn_deploy.targets import load_target  # noqa: E402

T = 5


@pytest.fixture
def simulator() -> Any:
    return pytest.importorskip("qsnn_deploy.sim")


def _doc(graph: Any = None, **kw: Any) -> dict[str, Any]:
    return json.loads(jg._dumps(jg.to_graph_json(graph or make_graph(1), **kw)))


def _write(tmp_path: Path, doc: Any, name: str = "g.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def test_round_trip_graph_target_and_timesteps(tmp_path: Path) -> None:
    graph = make_graph(1, static=False, reset="zero", overflow="wrap")
    path = jg.export_graph_json(graph, tmp_path / "g.json", target="int4-core", timesteps=T)
    back, target, meta = jg.read_graph_json(path)
    assert back == graph
    assert target == load_target("int4-core")
    assert meta == {"format": "qsnn-deploy-graph", "version": 1, "timesteps": T, "golden": None}


def test_file_validates_against_the_shipped_schema(tmp_path: Path) -> None:
    path = export(make_graph(2), "json", tmp_path / "g.json", target=load_target("int4-core"), timesteps=T)
    doc = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(jg.schema())
    jsonschema.validate(doc, jg.schema(), cls=jsonschema.Draft202012Validator)
    assert doc["format"] == "qsnn-deploy-graph" and doc["version"] == 1


def test_schema_covers_every_node_type_and_field() -> None:
    defs = jg.schema()["$defs"]
    assert set(defs["node"]["properties"]["op"]["enum"]) == set(NODE_TYPES)
    for op, cls in NODE_TYPES.items():
        fields = dataclasses.fields(cls)
        assert set(defs[op]["properties"]) == {"op"} | {f.name for f in fields}, op
        required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        assert set(defs[op]["required"]) == {"op"} | required, op
    lif = defs["LIF"]["properties"]
    for name, allowed in NeuronArithmetic.CHOICES.items():
        assert tuple(lif[name]["enum"]) == allowed, name


def test_reexport_is_byte_identical_and_canonical(tmp_path: Path) -> None:
    a = jg.export_graph_json(make_graph(4), tmp_path / "a.json", target="int4-core", timesteps=T)
    b = jg.export_graph_json(make_graph(4), tmp_path / "b.json", target="int4-core", timesteps=T)
    assert a.read_bytes() == b.read_bytes()
    doc = json.loads(a.read_text())
    assert a.read_text() == json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"


def test_golden_vectors_match_the_simulator(tmp_path: Path, simulator: Any) -> None:
    for static in (True, False):
        graph = make_graph(6, static=static)
        x = random_input(graph, 3, 2, T)
        # golden inputs use the data layout: (N, *shape) static, (N, T, *shape) frames
        path = jg.export_graph_json(graph, tmp_path / f"g{static}.json", timesteps=T, golden=x)
        _, _, meta = jg.read_graph_json(path)
        res = simulator.simulate(graph, x, T, backend="reference", record=False)
        assert len(meta["golden"]) == 3
        for i, sample in enumerate(meta["golden"]):
            assert np.array_equal(sample["input"], x[i])
            assert np.array_equal(sample["output_counts"], np.asarray(res.counts)[i])
            assert sample["layer_spike_counts"] == {k: int(np.asarray(v)[i]) for k, v in res.layer_spike_counts.items()}


def test_golden_needs_timesteps_and_matching_inputs(simulator: Any) -> None:
    graph = make_graph(6)
    with pytest.raises(ExportError, match="timesteps"):
        jg.to_graph_json(graph, golden=random_input(graph, 2, 0))
    with pytest.raises(ExportError, match="golden inputs"):
        jg.to_graph_json(graph, timesteps=T, golden=np.zeros((2, 3, 8, 8), dtype=np.int64))
    with pytest.raises(ExportError, match="UINT8"):
        jg.to_graph_json(graph, timesteps=T, golden=np.full((2, 1, 8, 8), 300))


def test_metadata_that_is_not_json_is_an_export_error() -> None:
    graph = make_graph(1)
    with pytest.raises(ExportError, match="metadata"):
        jg.to_graph_json(type(graph)(graph.nodes, graph.edges, {"x": float("nan")}))


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


LIF1 = ("graph", "nodes", "lif1")
MALFORMED: dict[str, tuple[Any, str]] = {
    "not json": ('{"format": ', "not valid UTF-8 JSON"),
    "NaN": ('{"format": NaN}', "NaN"),
    "not an object": ("[1, 2]", "not a qsnn-deploy-graph document"),
    "wrong format": ({"format": "onnx"}, "not a qsnn-deploy-graph document"),
    "unknown version": ("version=2", "unsupported qsnn-deploy-graph version 2"),
    "schema: bad reset": ("reset", "graph/nodes/lif1/reset"),
    "schema: extra field": ("extra", "Additional properties"),
    "schema: float weight": ("float", "is not of type 'integer'"),
    "IR: non-positive threshold": ("threshold", "thresholds must be positive"),
    "IR: values do not match shape": ("short", "holds"),
    "IR: dangling edge": ("edge", "unknown node"),
    "huge declared shape": ("huge", "exceeds the limit"),
    "target": ("target", "target int4-core"),
    "golden without timesteps": ("golden", "golden vectors need timesteps"),
    "duplicate keys": ('{"format": 1, "format": 2}', "repeats the key"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, "cannot be parsed"),
    "giant integer": ('{"version": ' + "9" * 5000 + "}", "cannot be parsed"),
}


def _malformed(kind: str) -> Any:
    doc = _doc(timesteps=T)
    thr = doc["graph"]["nodes"]["lif1"]["threshold"]
    if kind == "version=2":
        return {**doc, "version": 2}
    if kind == "reset":
        return _set(doc, (*LIF1, "reset"), "sideways")
    if kind == "extra":
        return _set(doc, (*LIF1, "colour"), "blue")
    if kind == "float":
        return _set(doc, ("graph", "nodes", "conv1", "weight", "values", 0), 0.5)
    if kind == "threshold":
        return _set(doc, (*LIF1, "threshold", "values"), [0] * len(thr["values"]))
    if kind == "short":
        return _set(doc, (*LIF1, "threshold", "values"), thr["values"][:-1])
    if kind == "edge":
        return _set(doc, ("graph", "edges", 0), ["input", "nowhere"])
    if kind == "huge":
        return _set(doc, ("graph", "nodes", "conv1", "weight", "shape"), [100_000, 100_000, 100_000, 3])
    if kind == "target":
        return _set(doc, ("target",), {**load_target("int4-core").to_dict(), "state": "INT64"})
    if kind == "golden":
        sample = {
            "input": {"dtype": "UINT8", "shape": [1, 8, 8], "values": [0] * 64},
            "output_counts": [0] * 6,
            "layer_spike_counts": {"lif1": 0, "lif2": 0},
        }
        return {**doc, "timesteps": None, "golden": [sample]}
    return kind


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_documents_raise_graph_error(tmp_path: Path, case: str) -> None:
    content, message = MALFORMED[case]
    path = _write(tmp_path, _malformed(content) if isinstance(content, str) else content)
    with pytest.raises(GraphError) as info:
        jg.read_graph_json(path)
    assert message in str(info.value)
    assert type(info.value) is GraphError


def test_unreadable_files_raise_graph_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(GraphError, match="cannot read"):
        jg.read_graph_json(tmp_path / "missing.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(GraphError, match="UTF-8"):
        jg.read_graph_json(tmp_path / "bin.json")
    monkeypatch.setattr(jg, "MAX_DOCUMENT_BYTES", 100)
    with pytest.raises(GraphError, match="larger than the limit"):
        jg.read_graph_json(_write(tmp_path, _doc()))


def test_inconsistent_golden_is_rejected(tmp_path: Path, simulator: Any) -> None:
    graph = make_graph(6)
    doc = json.loads(jg._dumps(jg.to_graph_json(graph, timesteps=T, golden=random_input(graph, 1, 0))))
    for path, value, message in (
        (("golden", 0, "layer_spike_counts"), {"lif1": 0}, "exactly the LIF layers"),
        (("golden", 0, "output_counts"), [T + 1] * 6, "at most T"),
        (("golden", 0, "input", "shape"), [64, 1, 1], "of shape"),
    ):
        with pytest.raises(GraphError, match=message):
            jg.read_graph_json(_write(tmp_path, _set(doc, path, value)))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_BASE = None


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=150, deadline=None)
@given(data=st.data(), value=JSON_VALUES)
def test_fuzzed_documents_raise_only_graph_error(data: st.DataObject, value: Any) -> None:
    global _BASE
    if _BASE is None:
        _BASE = _doc(target="int4-core", timesteps=T)
    path = data.draw(st.sampled_from(_paths(_BASE)))
    doc = _set(_BASE, path, value)
    try:
        graph, _, _ = jg.from_document(json.loads(json.dumps(doc)))
    except GraphError:
        return
    assert graph.chain()  # accepted documents build a usable graph


def test_export_dispatch(tmp_path: Path) -> None:
    assert {"json", "onnx", "qonnx", "nir"} <= set(FORMATS)
    assert all(name == spec.name for name, spec in FORMATS.items())
    with pytest.raises(ExportError, match="unknown export format"):
        export(make_graph(1), "xml", tmp_path / "g.xml")
    with pytest.raises(ExportError, match="golden"):
        export(make_graph(1), "onnx", tmp_path / "g.onnx", golden=np.zeros((1, 1, 8, 8)))
    with pytest.raises(ExportError, match="unroll"):
        export(make_graph(1), "json", tmp_path / "g.json", unroll=True)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "g.json"
    path.write_text("old")

    def fail(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("qsnn_deploy.atomic.os.fsync", fail)
    with pytest.raises(OSError):
        jg.export_graph_json(make_graph(1), path)
    with pytest.raises(OSError):
        jg.export_graph_json(make_graph(1), tmp_path / "new.json")
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["g.json"]


def test_golden_membrane_overflow_under_error_policy_is_a_target_error(simulator: Any) -> None:
    """An overflow under ``overflow="error"`` keeps its class (exit 6 in docs/cli.md), not ExportError (7)."""
    from qsnn_deploy.errors import TargetError
    from qsnn_deploy.ir import LIF, Graph
    from qsnn_deploy.ir.dtypes import IntType

    graph = make_graph(6)
    nodes = {}
    for name, node in graph.nodes.items():
        if isinstance(node, LIF):
            # the narrowest state that still holds threshold and bias: the membrane must leave it
            need = max(int(np.abs(node.threshold.values).max()), int(np.abs(node.bias.values).max())).bit_length() + 1
            node = dataclasses.replace(node, state=IntType(need), overflow="error")
        nodes[name] = node
    narrow = Graph(nodes, graph.edges, graph.metadata)
    x = np.full((1, 1, 8, 8), 255)
    with pytest.raises(TargetError, match="golden vectors: .*overflows the state type"):
        jg.to_graph_json(narrow, timesteps=T, golden=x)
    assert TargetError.exit_code == 6


def test_golden_spike_rasters_read_back_equal_the_recorded_simulation(tmp_path: Path, simulator: Any) -> None:
    from qsnn_deploy.sim import simulate

    for static in (True, False):
        graph = make_graph(7, static=static)
        x = random_input(graph, 3, 1, T)
        path = jg.export_graph_json(graph, tmp_path / f"r{static}.json", timesteps=T, golden=x)
        _, _, meta = jg.read_graph_json(path)
        res = simulate(graph, x, T, backend="reference", record=True)
        shapes = graph.shapes()
        for i, sample in enumerate(meta["golden"]):
            assert set(sample["spike_rasters"]) == set(res.spikes)
            raw = json.loads(path.read_text())["golden"][i]["spike_rasters"]
            for name, raster in sample["spike_rasters"].items():  # the reader unpacks them
                assert raster.shape == (T, *shapes[name])
                assert np.array_equal(jg.unpack_raster(raw[name], T, shapes[name]), raster)
                assert np.array_equal(raster, res.spikes[name][:, i])
                assert int(raster.sum()) == sample["layer_spike_counts"][name]


def test_a_truncated_spike_raster_is_a_graph_error() -> None:
    text = jg.pack_raster(np.ones((3, 5), dtype=np.uint8))
    assert jg.unpack_raster(text, 3, (5,)).sum() == 15
    with pytest.raises(GraphError, match="bytes"):
        jg.unpack_raster(text, 4, (5,))
    with pytest.raises(GraphError, match="base64"):
        jg.unpack_raster("not base64!", 3, (5,))


def _decode_trace_as_documented(text: str, nbytes: int) -> list[int]:
    # docs/formats.md: little-endian two's complement words of ceil(bits / 8) bytes, in order t * N + n
    raw = base64.b64decode(text)
    return [int.from_bytes(raw[i : i + nbytes], "little", signed=True) for i in range(0, len(raw), nbytes)]


def test_golden_membrane_traces_decode_as_documented_and_explain_the_spikes(tmp_path: Path, simulator: Any) -> None:
    from qsnn_deploy.exporters.golden import GoldenSource

    graph = make_graph(3)
    x = random_input(graph, 2, 3, T)
    source = GoldenSource("synthetic", "test", (17, 4))
    path = jg.export_graph_json(graph, tmp_path / "t.json", timesteps=T, golden=x, trace=True, golden_source=source)
    doc = json.loads(path.read_text())
    _, _, meta = jg.read_graph_json(path)
    shapes = graph.shapes()
    for i, sample in enumerate(doc["golden"]):
        assert sample["source"] == {"dataset": "synthetic", "split": "test", "index": source.indices[i]}
        for name, node in graph.lif_layers():
            n = int(np.prod(shapes[name]))
            values = _decode_trace_as_documented(sample["membrane_traces"][name], (node.state.bits + 7) // 8)
            assert len(values) == T * n
            v = np.array(values, dtype=np.int64).reshape(T, n)
            assert np.array_equal(meta["golden"][i]["membrane_traces"][name].reshape(T, n), v)
            spikes = meta["golden"][i]["spike_rasters"][name].reshape(T, n)
            if node.reset_timing == "delayed":  # the membrane after step t is the one compared with the threshold
                thr = np.broadcast_to(node.threshold.values.reshape(-1, *([1] * (len(shapes[name]) - 1))), shapes[name]).reshape(n)
                fired = v > thr if node.compare == "gt" else v >= thr
                assert np.array_equal(fired, spikes.astype(bool))
            assert node.state.min <= v.min() and v.max() <= node.state.max


def test_trace_is_refused_by_a_format_that_does_not_take_it(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="trace"):
        export(make_graph(1), "onnx", tmp_path / "g.onnx", trace=True)
