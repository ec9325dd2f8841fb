"""``export --golden N [--trace]``: golden samples name their source and carry membranes on request."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qsnn_deploy.app.cli import cli


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from qsnn_deploy.training.checkpoint import Checkpoint, model_state, save_checkpoint
    from qsnn_deploy.training.config import ModelConfig
    from qsnn_deploy.training.model import QSNN

    cfg = ModelConfig(timesteps=3)
    return save_checkpoint(Checkpoint(cfg, model_state(QSNN(cfg))), tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def test_golden_samples_record_their_data_set_and_indices(runner, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from qsnn_deploy.data.loaders import load_split

    out = tmp_path / "g.json"
    res = runner.invoke(
        cli, ["export", str(tiny_checkpoint), "--format", "json", "-o", str(out), "--golden", "3", "--data", "synthetic", "--trace"]
    )
    assert res.exit_code == 0, res.output
    samples = json.loads(out.read_text())["golden"]
    full = load_split("synthetic", "test", timesteps=3)
    for sample in samples:
        src = sample["source"]
        assert (src["dataset"], src["split"]) == ("synthetic", "test")
        stored = np.array(sample["input"]["values"]).reshape(sample["input"]["shape"])
        assert np.array_equal(stored, full.x[src["index"]])  # the index finds the very sample in the data set
        assert set(sample["membrane_traces"]) == set(sample["spike_rasters"])
    assert len({s["source"]["index"] for s in samples}) == 3


def test_trace_without_golden_is_a_usage_error(runner, tiny_checkpoint: Path, tmp_path: Path) -> None:
    res = runner.invoke(cli, ["export", str(tiny_checkpoint), "--format", "json", "-o", str(tmp_path / "g.json"), "--trace"])
    assert res.exit_code == 2
    assert "--golden" in res.output
    assert not (tmp_path / "g.json").exists()


def test_export_without_output_writes_the_format_default_name(runner, tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(cli, ["export", str(tiny_checkpoint), "--format", "qonnx"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "tiny.qonnx.onnx").is_file()
    assert "tiny.qonnx.onnx" in res.output
    again = runner.invoke(cli, ["export", str(tiny_checkpoint), "--format", "qonnx"])
    assert again.exit_code == 8  # refuses to overwrite without --force
