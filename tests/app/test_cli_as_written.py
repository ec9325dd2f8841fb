"""Commands work as written (issue 21): export's default output, a graph JSON's own target,
MODEL recognised by its content, and ``--limit`` beyond the split said out loud.

Each test fails on the behaviour the issue reports: ``-o`` required, ``--target int4-core``
replacing the graph's target, ONNX/NIR files answered with pickle advice, and a silent cap.
The tiny checkpoint (T = 4) and ``synthetic`` data keep every case well under a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qsnn_deploy.app.cli import cli
from qsnn_deploy.data.synthetic import SYNTHETIC_SIZES
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.targets import load_target

# the names the issue asks for: MODEL's stem, the format's suffix, in the current directory
DEFAULT_NAMES = {"json": "model.graph.json", "onnx": "model.onnx", "qonnx": "model.qonnx.onnx", "nir": "model.nir"}


def _ok(runner, args: list[str]):
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def _error_line(runner, args: list[str], status: int) -> str:
    res = runner.invoke(cli, args)
    assert res.exit_code == status, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, res.stderr
    return errors[0]


# --- 1. export without -o -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(DEFAULT_NAMES))
def test_export_without_output_writes_the_default_name_and_says_where(runner, make_ckpt, tmp_path, monkeypatch, fmt):
    model = make_ckpt()
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    res = _ok(runner, ["export", str(model), "--format", fmt])
    written = work / DEFAULT_NAMES[fmt]
    assert written.is_file() and written.stat().st_size > 0
    assert f"wrote {DEFAULT_NAMES[fmt]}" in res.stdout
    assert {p.name for p in work.iterdir()} == {DEFAULT_NAMES[fmt]}
    before = written.read_bytes()
    line = _error_line(runner, ["export", str(model), "--format", fmt], 8)
    assert DEFAULT_NAMES[fmt] in line and "--force" in line
    assert written.read_bytes() == before
    _ok(runner, ["export", str(model), "--format", fmt, "--force"])


# --- 2. a graph JSON's embedded target is the default ---------------------------------------------


@pytest.fixture
def int32_graph(runner, make_ckpt, tmp_path) -> Path:
    """A graph JSON exported for a profile with a 32-bit membrane (not int4-core's 24)."""
    profile = load_target("int4-core").with_changes(name="int32-state", state=IntType(32, signed=True))
    profile_path = tmp_path / "in" / "int32-state.json"
    profile_path.parent.mkdir(exist_ok=True)
    profile_path.write_text(json.dumps(profile.to_dict()))
    graph = tmp_path / "in" / "graph.json"
    _ok(runner, ["export", str(make_ckpt()), "--format", "json", "--target", str(profile_path), "-o", str(graph)])
    return graph


def test_simulate_graph_json_uses_its_own_target(runner, int32_graph, tmp_path):
    report = tmp_path / "report.json"
    _ok(runner, ["simulate", str(int32_graph), "--data", "synthetic", "--limit", "8", "--quiet", "--json", str(report)])
    assert json.loads(report.read_text())["target"] == "int32-state"


def test_export_graph_json_keeps_its_own_target(runner, int32_graph, tmp_path):
    again = tmp_path / "again.graph.json"
    _ok(runner, ["export", str(int32_graph), "--format", "json", "-o", str(again)])
    assert json.loads(again.read_text())["target"]["state"] == "INT32"


@pytest.mark.parametrize("command", ["simulate", "export"])
def test_explicit_target_checks_the_graph_against_it(runner, int32_graph, tmp_path, command):
    out = tmp_path / "out"
    out.mkdir()
    extra = ["--data", "synthetic", "--limit", "8", "--quiet"] if command == "simulate" else ["--format", "json", "-o", str(out / "g.json")]
    line = _error_line(runner, [command, str(int32_graph), "--target", "int4-core", *extra], 6)
    assert "state INT32" in line and "INT24" in line
    assert not any(out.iterdir())


# --- 3. MODEL recognised by its content -------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "what"), [("onnx", "an ONNX model"), ("qonnx", "a QONNX model"), ("nir", "NIR")])
def test_foreign_model_files_are_named_not_unpickled(runner, make_ckpt, tmp_path, fmt, what):
    exported = tmp_path / "in" / f"exported.{fmt}"
    _ok(runner, ["export", str(make_ckpt()), "--format", fmt, "-o", str(exported)])
    for command in ("simulate", "parity", "export"):
        extra = ["--format", "json", "-o", str(tmp_path / "x.json")] if command == "export" else ["--data", "synthetic", "--limit", "8"]
        line = _error_line(runner, [command, str(exported), *extra], 3)
        assert what in line and str(exported) in line, line
        assert "checkpoint (.pt) or a graph JSON" in line
        assert "--trust-checkpoint" not in line and "unpickle" not in line
    assert not (tmp_path / "x.json").exists()


def test_files_are_read_by_content_not_name(runner, make_ckpt, tmp_path):
    """A graph JSON named .pt is a graph; a checkpoint named .json is a checkpoint."""
    graph = tmp_path / "in" / "graph.pt"
    _ok(runner, ["export", str(make_ckpt()), "--format", "json", "-o", str(graph)])
    report = tmp_path / "report.json"
    _ok(runner, ["simulate", str(graph), "--data", "synthetic", "--limit", "8", "--quiet", "--json", str(report)])
    assert json.loads(report.read_text())["samples"] == 8
    ckpt = make_ckpt("checkpoint.json")
    parity = tmp_path / "parity.json"
    _ok(runner, ["parity", str(ckpt), "--data", "synthetic", "--limit", "8", "--quiet", "--json", str(parity)])
    assert json.loads(parity.read_text())["samples"] == 8


# --- 4. --limit above the split's size ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["simulate", "parity"])
def test_limit_beyond_the_split_is_reported(runner, make_ckpt, tmp_path, command):
    size = SYNTHETIC_SIZES["test"]
    report = tmp_path / "report.json"
    res = _ok(runner, [command, str(make_ckpt()), "--data", "synthetic", "--limit", "100000", "--quiet", "--json", str(report)])
    doc = json.loads(report.read_text())
    assert doc["samples"] == size and doc["requested"] == 100000
    assert f"{size:,} of the 100,000 requested" in res.stdout


def test_limit_within_the_split_is_not_flagged(runner, make_ckpt, tmp_path):
    report = tmp_path / "report.json"
    res = _ok(runner, ["simulate", str(make_ckpt()), "--data", "synthetic", "--limit", "8", "--quiet", "--json", str(report)])
    doc = json.loads(report.read_text())
    assert doc["samples"] == 8 and doc["requested"] == 8
    assert "requested" not in res.stdout
