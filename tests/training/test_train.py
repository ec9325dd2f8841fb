"""Training pipeline: CLI run, outputs, resume, schedules and checkpoints."""

import json
import math

import pytest
import torch

from qsnn_deploy.app.cli import cli
from qsnn_deploy.errors import CheckpointError
from qsnn_deploy.training.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint
from qsnn_deploy.training.config import ModelConfig, TrainConfig, get_preset
from qsnn_deploy.training.schedules import learning_rate

SMALL = ["--data", "synthetic", "--timesteps", "12", "--batch-size", "64", "--limit-train", "320", "--limit-test", "128", "--quiet"]


def test_train_cli_writes_run_and_learns(runner, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(cli, ["train", "--out", str(out), "--epochs", "2", *SMALL])
    assert res.exit_code == 0, res.output
    for name in ("best.pt", "last.pt", "metrics.csv", "metrics.json", "iterations.csv", "loss.png", "lr.png", "accuracy.png", "train.log"):
        assert (out / name).is_file(), name
    history = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert max(h["test_acc"] for h in history) > 0.5  # 10 classes: chance is 0.1
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.model_config.timesteps == 12 and ckpt.preset == "fmnist-int4"
    assert ckpt.train_state is None and "test_acc" in ckpt.metrics
    # a second run into the same folder refuses to overwrite it
    res = runner.invoke(cli, ["train", "--out", str(out), "--epochs", "1", *SMALL])
    assert res.exit_code == 8 and "--resume" in res.output


def test_resume_continues_exactly(runner, tmp_path):
    """Two epochs, or one epoch then --resume for the second: identical weights and logs."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert runner.invoke(cli, ["train", "--out", str(a), "--epochs", "2", *SMALL]).exit_code == 0
    assert runner.invoke(cli, ["train", "--out", str(b), "--epochs", "1", *SMALL]).exit_code == 0
    res = runner.invoke(cli, ["train", "--out", str(b), "--epochs", "2", "--resume", "--quiet"])
    assert res.exit_code == 0, res.output
    ca, cb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    for key in ca.state_dict:
        assert torch.equal(ca.state_dict[key], cb.state_dict[key]), key
    assert ca.train_state["iter_loss"] == cb.train_state["iter_loss"]
    assert ca.train_state["iter_lr"] == cb.train_state["iter_lr"]


def test_refit_branches_off_and_trains_on_all_images(runner, tmp_path):
    """A refit continues a run's epoch-1 state on train + validation, keeping the LR's phase."""
    small = ["--data", "synthetic", "--timesteps", "12", "--batch-size", "32", "--limit-train", "512", "--limit-test", "128", "--quiet"]
    run, refit = tmp_path / "run", tmp_path / "refit"
    assert runner.invoke(cli, ["train", "--out", str(run), "--epochs", "1", *small]).exit_code == 0
    source = load_checkpoint(run / "last.pt")
    res = runner.invoke(cli, ["train", "--out", str(refit), "--epochs", "2", "--refit-from", str(run / "last.pt"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "refit to epoch 2" in res.output
    last = load_checkpoint(refit / "last.pt")
    assert last.train_config.val_fraction == 0.0 and last.train_config.seed == source.train_config.seed
    assert last.train_state["refit_from"]["epoch"] == 1
    # 461 of 512 images per epoch before (15 batches of 32), all 512 after (16 batches)
    n_before = len(source.train_state["iter_lr"])
    assert n_before == 15 and len(last.train_state["iter_lr"]) == n_before + 16
    assert last.train_state["iter_lr"][n_before] == learning_rate(last.train_config, 16, 16)
    assert last.train_state["iter_loss"][:n_before] == source.train_state["iter_loss"]
    history = json.loads((refit / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and history[0]["val_acc"] is not None and history[1]["val_acc"] is None
    best = load_checkpoint(refit / "best.pt")
    assert best.metrics["epoch"] == 2 and best.metrics["best_val_acc"] is None
    for key in best.state_dict:
        assert torch.equal(best.state_dict[key], last.state_dict[key]), key
    # the refit run resumes like any run
    res = runner.invoke(cli, ["train", "--out", str(refit), "--epochs", "3", "--resume", "--quiet"])
    assert res.exit_code == 0, res.output
    assert len(load_checkpoint(refit / "last.pt").train_state["iter_lr"]) == n_before + 32


def test_refit_rejects_bad_requests(runner, tmp_path):
    run = tmp_path / "run"
    assert runner.invoke(cli, ["train", "--out", str(run), "--epochs", "1", *SMALL]).exit_code == 0
    res = runner.invoke(cli, ["train", "--out", str(tmp_path / "a"), "--refit-from", str(run / "last.pt"), "--quiet"])
    assert res.exit_code == 2 and "--epochs" in res.output
    res = runner.invoke(cli, ["train", "--out", str(tmp_path / "b"), "--epochs", "1", "--refit-from", str(run / "last.pt"), "--quiet"])
    assert res.exit_code != 0 and "already at epoch 1" in res.output
    res = runner.invoke(cli, ["train", "--out", str(tmp_path / "c"), "--epochs", "2", "--refit-from", str(run / "best.pt"), "--quiet"])
    assert res.exit_code == 3 and "no training state" in res.output
    for flag in (["--resume"], ["--finetune", str(run / "best.pt")]):
        res = runner.invoke(
            cli, ["train", "--out", str(tmp_path / "d"), "--epochs", "2", "--refit-from", str(run / "last.pt"), *flag, "--quiet"]
        )
        assert res.exit_code != 0 and "a refit starts a new run" in res.output, flag
    for out in ("a", "b", "c", "d"):
        assert not (tmp_path / out).exists(), out


def test_resume_without_run_is_a_clear_error(runner, tmp_path):
    res = runner.invoke(cli, ["train", "--out", str(tmp_path / "none"), "--resume", "--quiet"])
    assert res.exit_code == 3 and "last.pt" in res.output


def test_cosine_schedule_is_periodic_eq4():
    cfg = TrainConfig(lr=1.0, schedule="cosine", cosine_period_epochs=10)
    ipe = 7
    assert learning_rate(cfg, 0, ipe) == 1.0
    assert learning_rate(cfg, 10 * ipe, ipe) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(cfg, 20 * ipe, ipe) == pytest.approx(1.0)  # boosted back up
    assert learning_rate(cfg, 5 * ipe, ipe) == pytest.approx(0.5)
    step = TrainConfig(lr=1.0, schedule="step", step_epochs=15)
    assert learning_rate(step, 15 * ipe - 1, ipe) == 1.0 and learning_rate(step, 15 * ipe, ipe) == 0.5
    loss = TrainConfig(lr=1.0, schedule="loss-step")
    assert learning_rate(loss, 123, ipe, loss_halvings=3) == 0.125
    assert learning_rate(TrainConfig(lr=0.3, schedule="none"), 999, ipe) == 0.3


def test_presets_follow_table_one():
    p = get_preset("fmnist-int4")
    assert (p.model.beta, p.model.threshold, p.model.slope, p.train.lr) == (0.974, 2.473, 5.5565, 2.908e-3)
    assert p.model.batch_norm and math.isclose(p.model.dropout, 0.0736) and p.train.batch_size == 128
    assert p.model.weight_bits == 4 and get_preset("fmnist-float").model.weight_bits == 32
    assert get_preset("dvs-int4").model.in_channels == 2 and get_preset("dvs-int4").model.dense_in == 800


def _tiny_ckpt() -> Checkpoint:
    from qsnn_deploy.training.checkpoint import model_state
    from qsnn_deploy.training.model import QSNN

    cfg = ModelConfig(timesteps=5)
    return Checkpoint(cfg, model_state(QSNN(cfg)))


def test_checkpoint_roundtrip_and_weights_only(tmp_path):
    ckpt = _tiny_ckpt()
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    back = load_checkpoint(path)
    assert back.model_config == ckpt.model_config
    model = build_model(back)
    assert not model.training


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned_marker",))


def test_pickle_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "qsnn-deploy-checkpoint", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned_marker").exists()


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(_tiny_ckpt(), tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_nan_weights_are_refused(tmp_path):
    ckpt = _tiny_ckpt()
    ckpt.state_dict["fc.weight"][0, 0] = float("nan")
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="fc.weight"):
        load_checkpoint(path)


def test_reference_state_dict_import(tmp_path):
    ckpt = _tiny_ckpt()
    ref = {}
    for k, v in ckpt.state_dict.items():
        k2 = (
            k.replace("convs.0.", "conv1.")
            .replace("convs.1.", "conv2.")
            .replace("bns.0.", "conv1_bn.")
            .replace("bns.1.", "conv2_bn.")
            .replace("fc.", "fc1.")
        )
        if not k.startswith("lifs."):
            ref[k2] = v
    path = tmp_path / "ref.pt"
    torch.save(ref, path)
    with pytest.raises(CheckpointError, match="--preset"):
        load_checkpoint(path)
    back = load_checkpoint(path, config=ckpt.model_config)
    model = build_model(back)
    assert torch.equal(model.fc.weight, ckpt.state_dict["fc.weight"])


def test_wrong_architecture_is_named(tmp_path):
    ckpt = _tiny_ckpt()
    del ckpt.state_dict["convs.1.weight"]
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="convs.1.weight"):
        build_model(load_checkpoint(path))


def test_failed_start_leaves_no_run_folder(runner, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(cli, ["train", "--out", str(out), "--data", "fmnist", "--data-dir", str(tmp_path / "nowhere"), "--quiet"])
    assert res.exit_code == 4 and "nowhere" in res.output
    assert not out.exists()


def test_graph_json_errors_name_the_file(tmp_path):
    from qsnn_deploy.errors import GraphError
    from qsnn_deploy.exporters.json_graph import read_graph_json

    bad = tmp_path / "broken.json"
    bad.write_text('{"format": "qsnn-deploy-graph", "version": 1}')
    with pytest.raises(GraphError, match=r"broken\.json: "):
        read_graph_json(bad)
