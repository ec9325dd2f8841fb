"""``qsnn-deploy tune`` on synthetic data: a tiny search, its report, ``train --config``, bad input."""

from __future__ import annotations

import json
import math

import optuna
import pytest

from qsnn_deploy.app.cli import cli
from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.checkpoint import load_checkpoint
from qsnn_deploy.training.run_config import parse_run_config
from qsnn_deploy.training.tune_space import SEARCH_SPACE, parse_space

TINY = ["--epochs-per-trial", "1", "--limit-train", "40", "--limit-test", "16", "--data", "synthetic", "--timesteps", "2", "--quiet"]
COMPLETE = optuna.trial.TrialState.COMPLETE


def _study(url: str, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def test_search_report_and_train_config(runner, tmp_path):
    """Two trials through the CLI, then --report's config trains with `train --config` (flags win)."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    report_dir = tmp_path / "report"
    res = runner.invoke(
        cli, ["tune", "--study", "s", "--storage", url, "--trials", "2", *TINY, "--report", "--report-dir", str(report_dir)]
    )
    assert res.exit_code == 0, res.output
    trials = _study(url).trials
    assert len(trials) == 2 and sorted(t.user_attrs["seed"] for t in trials) == [0, 1]
    done = [t for t in trials if t.state == COMPLETE]
    assert done and all(0.0 <= t.value <= 1.0 for t in done) and set(done[0].params) == {d.name for d in SEARCH_SPACE}
    best = max(done, key=lambda t: t.value)
    config = json.loads((report_dir / "best_config.json").read_text())
    assert config["preset"] == "fmnist-int4" and config["source"]["trial"] == best.number
    assert config["model"]["beta"] == best.params["beta"] and config["train"]["lr"] == best.params["lr"]
    assert config["model"]["timesteps"] == 2 and config["train"]["dataset"] == "synthetic"
    for name in ("history.png", "slices.png"):
        assert (report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert f"{best.value:.4g}" in res.output and "best config:" in res.output

    run = tmp_path / "run"
    args = ["train", "--config", str(report_dir / "best_config.json"), "--out", str(run), "--epochs", "1", "--timesteps", "3"]
    res = runner.invoke(cli, [*args, "--limit-train", "40", "--limit-test", "16", "--quiet"])
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt.model_config.beta == best.params["beta"] and ckpt.train_config.lr == best.params["lr"]
    assert ckpt.train_config.dataset == "synthetic"
    assert ckpt.model_config.timesteps == 3  # the flag given wins over the file's 2


def test_space_file_replaces_the_space(runner, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text('[beta]\nlow = 0.5\nhigh = 0.6\n\n[schedule]\nchoices = ["step"]\n')
    url = f"journal:{tmp_path / 'j.log'}"  # and Optuna's journal file storage
    res = runner.invoke(cli, ["tune", "--study", "s", "--storage", url, "--trials", "1", "--space", str(space), *TINY])
    assert res.exit_code == 0, res.output
    (trial,) = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(_journal(tmp_path / "j.log"))).trials
    assert set(trial.params) == {"beta", "schedule"} and 0.5 <= trial.params["beta"] <= 0.6 and trial.params["schedule"] == "step"


def _journal(path):
    from optuna.storages.journal import JournalFileBackend

    return JournalFileBackend(str(path))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"bogus": {"low": 0, "high": 1}}, "'bogus' is not a model or training config field"),
        ({"seed": {"low": 0, "high": 9}}, "fixed by the study"),
        ({"beta": {"low": 0.9, "high": 0.5}}, "low (0.9) must be below high (0.5)"),
        ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "log-scale range needs low > 0"),
        ({"beta": {"low": 0.1}}, "needs both low and high"),
        ({"beta": {"low": 0.1, "high": 0.9, "step": 0.1}}, "unknown keys ['step']"),
        ({"batch_size": {"low": 16.5, "high": 64}}, "must be a whole number"),
        ({"schedule": {"low": 0, "high": 1}}, "give choices, not a range"),
        ({"schedule": {"choices": []}}, "non-empty list"),
        ({}, "non-empty table"),
    ],
)
def test_bad_space_is_named(doc, message):
    with pytest.raises(QsnnError) as exc:
        parse_space(doc, "space.json")
    assert message in str(exc.value)


def test_bad_files_fail_cleanly(runner, tmp_path):
    bad = tmp_path / "space.json"
    bad.write_text("{not json")
    res = runner.invoke(cli, ["tune", "--study", "s", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--space", str(bad), *TINY])
    assert res.exit_code == 1 and "is not valid JSON" in res.output
    assert not (tmp_path / "s.db").exists()  # nothing opened before the input was checked
    res = runner.invoke(cli, ["tune", "--study", "nope", "--storage", f"sqlite:///{tmp_path / 'none.db'}", "--report"])
    assert res.exit_code == 1 and "does not exist" in res.output and not (tmp_path / "none.db").exists()
    res = runner.invoke(cli, ["tune", "--study", "s", "--storage", "just-a-name", *TINY])
    assert res.exit_code == 1 and "neither a database URL" in res.output
    config = tmp_path / "c.toml"
    config.write_text("[model]\nbeta = 2.0\n")
    res = runner.invoke(cli, ["train", "--config", str(config), "--out", str(tmp_path / "r"), "--data", "synthetic"])
    assert res.exit_code == 1 and "c.toml: [model] beta must lie in [0, 1]" in res.output and not (tmp_path / "r").exists()
    with pytest.raises(QsnnError, match=r"\[train\] has unknown fields \['epoch'\]"):
        parse_run_config({"train": {"epoch": 3}})


def test_failed_trial_keeps_its_reason_and_the_study_goes_on(runner, tmp_path, monkeypatch):
    """Trial 0's validation accuracy turns NaN (the real run, its report poisoned): failed, reason kept, trial 1 runs."""
    import qsnn_deploy.training.trainer as trainer

    real_train = trainer.train

    def train_with_nan_on_seed_0(model_cfg, train_cfg, out_dir, *, on_epoch, **kw):
        def poisoned(row):
            on_epoch({**row, "val_acc": math.nan} if train_cfg.seed == 0 else row)

        return real_train(model_cfg, train_cfg, out_dir, on_epoch=poisoned, **kw)

    monkeypatch.setattr(trainer, "train", train_with_nan_on_seed_0)
    url = f"sqlite:///{tmp_path / 's.db'}"
    res = runner.invoke(cli, ["tune", "--study", "s", "--storage", url, "--trials", "1", *TINY])
    assert res.exit_code == 0, res.output
    failed, complete = _study(url).trials
    assert failed.state == optuna.trial.TrialState.FAIL and "validation accuracy is nan at epoch 1" in failed.user_attrs["fail_reason"]
    assert complete.state == COMPLETE  # a failed trial does not count: the worker ran another
    res = runner.invoke(cli, ["tune", "--study", "s", "--storage", url, "--report", "--report-dir", str(tmp_path / "rep")])
    assert res.exit_code == 0 and "failed trial 0: QsnnError: validation accuracy is nan" in res.output


def test_workers_must_share_the_study_settings(runner, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert runner.invoke(cli, ["tune", "--study", "s", "--storage", url, "--trials", "1", *TINY]).exit_code == 0
    res = runner.invoke(cli, ["tune", "--study", "s", "--storage", url, "--trials", "2", *TINY, "--epochs-per-trial", "2"])
    assert res.exit_code == 1 and "epochs_per_trial: study 1, this worker 2" in res.output
    assert len(_study(url).trials) == 1
    # asking for what the study already holds runs nothing
    res = runner.invoke(cli, ["tune", "--study", "s", "--storage", url, "--trials", "1", *TINY])
    assert res.exit_code == 0 and len(_study(url).trials) == 1


def test_target_scores_the_deployed_integer_accuracy(runner, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    res = runner.invoke(cli, ["tune", "--study", "s", "--storage", url, "--trials", "1", "--target", "int4-core", *TINY])
    assert res.exit_code == 0, res.output
    (trial,) = _study(url).trials
    assert trial.state == COMPLETE and trial.value == trial.user_attrs["deployed_acc"]
    assert 0.0 <= trial.value <= 1.0 and "val_acc" in trial.user_attrs


def test_target_rejecting_the_model_fails_the_trial(runner, tmp_path):
    """8-bit weights do not fit int4-core: with --target the trial fails with the target's reason."""
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"weight_bits": {"choices": [8]}}))
    url = f"sqlite:///{tmp_path / 's.db'}"
    res = runner.invoke(
        cli,
        [
            "tune",
            "--study",
            "s",
            "--storage",
            url,
            "--trials",
            "1",
            "--space",
            str(space),
            "--target",
            "int4-core",
            "--max-failures",
            "1",
            *TINY,
        ],
    )
    assert res.exit_code == 0, res.output  # the failure is recorded; --max-failures 1 stops the worker
    (trial,) = _study(url).trials
    assert trial.state == optuna.trial.TrialState.FAIL and "beyond target weight type" in trial.user_attrs["fail_reason"]
