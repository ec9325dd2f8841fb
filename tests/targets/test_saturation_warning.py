"""A state too narrow for F = 0 saturates: ``export`` warns and ``simulate`` reports it."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

from qsnn_deploy.app.cli import cli
from qsnn_deploy.app.loading import load_deployable
from qsnn_deploy.targets.rules import membrane_saturation_risks

MODEL = Path(str(resources.files("qsnn_deploy") / "assets" / "fmnist_int4.pt"))
FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def int16_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """int4-core with a 16-bit membrane (accumulator kept at 24 bits, so every rule passes)."""
    profile = json.loads((resources.files("qsnn_deploy") / "targets" / "int4-core.json").read_text())
    profile.update(name="int16-state", state="INT16")
    path = tmp_path_factory.mktemp("target") / "int16-state.json"
    path.write_text(json.dumps(profile))
    return path


def test_only_the_narrow_state_is_at_risk(int16_target: Path) -> None:
    shipped = load_deployable(MODEL, target="int4-core")
    assert membrane_saturation_risks(shipped.graph, 100) == []
    narrow = load_deployable(MODEL, target=str(int16_target))
    risks = membrane_saturation_risks(narrow.graph, 100)
    assert risks and risks[0].startswith("layer 'lif1'") and "INT16" in risks[0]
    assert narrow.graph.nodes["lif1"].input_shift == 0


def test_export_warns_and_simulate_reports_saturations(int16_target: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["--target", str(int16_target), "--timesteps", "4"]
    out = runner.invoke(cli, ["export", str(MODEL), *common, "--format", "json", "-o", str(tmp_path / "g.json")])
    assert out.exit_code == 0, out.output
    assert "warning: layer 'lif1': worst-case membrane" in out.stderr
    report = tmp_path / "sim.json"
    data = ["--data-dir", str(FMNIST), "--limit", "8", "--quiet", "--json", str(report)]
    out = runner.invoke(cli, ["simulate", str(MODEL), *common, *data])
    assert out.exit_code == 0, out.output
    layers = {layer["name"]: layer["saturations"] for layer in json.loads(report.read_text())["layers"]}
    assert layers["lif1"] > 0
    assert "warning: membranes saturated (neuron-steps): lif1" in out.stderr


def test_a_readout_that_cannot_fire_is_bounded_without_its_threshold() -> None:
    import dataclasses

    import numpy as np

    from qsnn_deploy.analysis.bounds import readout_score_bound
    from qsnn_deploy.ir import IntTensor
    from qsnn_deploy.passes.readout import membrane_readout

    graph = load_deployable(MODEL, target="int4-core").graph
    w, b = np.full((10, 1024), 7, np.int64), np.zeros(10, np.int64)
    shift = max(f for f in range(8) if readout_score_bound(w, b, f, 100) < graph.nodes["lif2"].state.max)
    readout = membrane_readout(graph, "lif2", w, b, shift, 100)
    assert membrane_saturation_risks(readout, 100) == []  # the bound fits: the threshold (state max) is never subtracted
    scores = readout.nodes["scores"]
    firing = dataclasses.replace(scores, threshold=IntTensor(scores.threshold.values - 1, scores.state))  # reachable: it may fire
    risks = membrane_saturation_risks(readout.replace_node("scores", firing), 100)
    assert len(risks) == 1 and risks[0].startswith("layer 'scores'")
