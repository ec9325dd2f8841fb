"""The README's main job and the library example run end to end on the shipped model."""

import json
import subprocess
import sys
from pathlib import Path

from qsnn_deploy.app.cli import cli
from qsnn_deploy.app.demo import DEMO_MODEL, EXPORTS, SHIPPED_MODEL

ROOT = Path(__file__).resolve().parents[2]


def test_demo_exports_every_format_and_reports_parity(runner, tmp_path):
    res = runner.invoke(cli, ["demo", "--out", str(tmp_path), "--limit", "48", "--quiet"])
    assert res.exit_code == 0, res.output
    for name in EXPORTS.values():
        assert (tmp_path / name).stat().st_size > 1000, name
    parity = json.loads((tmp_path / "parity.json").read_text())
    sim = json.loads((tmp_path / "simulate.json").read_text())
    assert parity["samples"] == sim["samples"] == 48
    assert parity["int_accuracy"] == sim["accuracy"] > 0.5  # a trained model, 10 classes
    assert parity["prediction_agreement"] > 0.9
    assert parity["output_readout"] == "membrane"  # the default model is the sg-cvx refit
    assert "float accuracy" in res.output and "SynOps" in res.output


def test_example_script_runs(tmp_path):
    res = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "end_to_end.py"), str(SHIPPED_MODEL), "--out", str(tmp_path), "--limit", "16"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "integer accuracy" in res.stdout and (tmp_path / "model.json").is_file() and (tmp_path / "model.onnx").is_file()


def test_shipped_model_is_linked_from_examples():
    assert (ROOT / "examples" / "fmnist_int4" / "model.pt").resolve() == SHIPPED_MODEL.resolve()


def test_demo_model_is_the_shipped_model_with_its_sg_cvx_readout():
    import torch

    from qsnn_deploy.training.checkpoint import load_checkpoint
    from qsnn_deploy.training.convex.conv_checkpoint import load_conv_readout

    refit = load_conv_readout(DEMO_MODEL)
    shipped = load_checkpoint(SHIPPED_MODEL)
    assert refit.target == "int4-core" and refit.feature_layer == "lif2"
    assert refit.base.model_config == shipped.model_config
    assert all(torch.equal(refit.base.state_dict[k], v) for k, v in shipped.state_dict.items())  # the same conv layers
    assert DEMO_MODEL.read_bytes() == (ROOT / "runs" / "fmnist-sgcvx-sqhinge" / "best.pt").read_bytes()


def test_the_api_loader_names_what_the_demo_model_is():
    import pytest

    import qsnn_deploy as qd
    from qsnn_deploy.errors import CheckpointError

    with pytest.raises(CheckpointError, match="a qsnn-deploy-conv-readout file, not a QAT model checkpoint"):
        qd.load_model(qd.DEMO_MODEL)
