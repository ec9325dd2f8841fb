"""Graph documents written before T was a graph field (``metadata.timesteps``) still load, with T in ``Graph.timesteps``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qsnn_deploy.errors import GraphError
from qsnn_deploy.exporters.json_graph import export_graph_json, read_graph_json
from qsnn_deploy.ir import Graph
from qsnn_deploy.sim import simulate

#: written by qsnn-deploy at commit 2397442 (a tiny conv QSNN frozen for int4-core, T = 6, 2 golden samples)
LEGACY = Path(__file__).parent / "data" / "graph_v1_metadata_timesteps.json"


def test_a_committed_v1_file_loads_with_its_timesteps_in_the_field() -> None:
    raw = json.loads(LEGACY.read_text())
    assert raw["graph"]["metadata"]["timesteps"] == 6  # the file really is the old layout
    graph, target, meta = read_graph_json(LEGACY)
    assert graph.timesteps == 6 == meta["timesteps"]
    assert "timesteps" not in graph.metadata and graph.metadata["producer"] == "qsnn-deploy freeze"
    for sample in meta["golden"]:  # the golden vectors still hold under today's simulator
        got = simulate(graph, sample["input"][None], graph.timesteps)
        assert np.array_equal(got.counts[0], sample["output_counts"])


def test_rewriting_a_v1_file_keeps_t_in_the_document_only(tmp_path: Path) -> None:
    graph, target, _ = read_graph_json(LEGACY)
    out = export_graph_json(graph, tmp_path / "g.json", target=target)
    doc = json.loads(out.read_text())
    assert doc["timesteps"] == 6 and "timesteps" not in doc["graph"]["metadata"]
    again, _, _ = read_graph_json(out)
    assert again.timesteps == 6 and again.to_dict() == graph.to_dict()


def test_metadata_timesteps_fills_a_null_document_timesteps(tmp_path: Path) -> None:
    doc = json.loads(LEGACY.read_text())
    doc["timesteps"], doc["golden"] = None, None
    path = tmp_path / "null_t.json"
    path.write_text(json.dumps(doc))
    assert read_graph_json(path)[0].timesteps == 6
    doc["graph"]["metadata"]["timesteps"] = "six"
    path.write_text(json.dumps(doc))
    with pytest.raises(GraphError, match="metadata.timesteps must be a positive integer"):
        read_graph_json(path)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "100", True])
def test_graph_timesteps_must_be_a_positive_integer(bad: object) -> None:
    graph, _, _ = read_graph_json(LEGACY)
    with pytest.raises(GraphError, match="timesteps must be a positive integer"):
        Graph(graph.nodes, graph.edges, graph.metadata, bad)  # type: ignore[arg-type]
