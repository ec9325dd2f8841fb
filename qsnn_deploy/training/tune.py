"""Hyperparameter search of the paper (Table I footnote: TPE in Optuna) over a preset.

Each trial trains ``epochs_per_trial`` epochs with :func:`qsnn_deploy.training.trainer.train`
and reports the validation accuracy after every epoch, so the pruner (median or Hyperband) can
stop weak trials early. With a ``target`` the trial's score is the deployed integer accuracy:
the best epoch's model frozen for the target and simulated bit-accurately on the validation split.

The study lives in an Optuna storage (default a local SQLite file; any RDB URL such as
PostgreSQL, or a journal file), so many processes, on many machines, can each run ``tune`` on
one study as workers. Optuna does the coordination; this module only chooses what a trial is.
RDB storages get a heartbeat, so a killed worker's trial is marked failed, not left running.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.config import check_precision, get_preset, override
from qsnn_deploy.training.tune_space import SEARCH_SPACE, Dimension, split_params

PRUNERS = ("median", "hyperband")
#: seconds between a running trial's heartbeats (RDB storages); a trial silent for twice this is failed
DEFAULT_HEARTBEAT = 60
#: tries to open an RDB storage (see open_storage)
_OPEN_ATTEMPTS = 4
#: failed trials in a row after which a worker stops
DEFAULT_MAX_FAILURES = 5
#: states that count towards a study's requested number of trials
FINISHED = ("COMPLETE", "PRUNED")
#: study settings added later, with the value older studies ran with
_SETTING_DEFAULTS = {"precision": "fp32"}


def default_storage(study: str) -> str:
    return f"sqlite:///{study}.db"


def is_journal(url: str) -> bool:
    """``journal:PATH`` or a path ending ``.log``: Optuna's journal file storage."""
    return url.startswith("journal:") or url.endswith(".log")


def open_storage(url: str, heartbeat: int | None = DEFAULT_HEARTBEAT) -> Any:
    """An Optuna storage for ``url``: an RDB URL (``sqlite:///F.db``, ``postgresql://...``) or a journal file.

    Raises:
        QsnnError: the URL is neither, or the database cannot be opened.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if is_journal(url):
        path = Path(url.removeprefix("journal:"))
        if not path.parent.is_dir():
            raise QsnnError(f"journal storage {path}: folder {path.parent} does not exist")
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise QsnnError(
            f"storage {url!r} is neither a database URL (sqlite:///F.db, postgresql://...) nor a journal (journal:PATH or *.log)"
        )
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # the heartbeat is marked experimental; it is what fails a killed worker's trial
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat or None)
        except Exception as exc:  # SQLAlchemy's errors (bad driver, unreachable server, ...) carry the reason
            # workers started together on a new database race to create its tables: the loser retries
            if attempt == _OPEN_ATTEMPTS - 1:
                raise QsnnError(f"cannot open storage {url}: {exc}") from exc
            time.sleep(0.5 * (attempt + 1))


def _pruner(name: str, epochs: int) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    raise QsnnError(f"unknown pruner {name!r}; choose from {', '.join(PRUNERS)}")


def deployed_accuracy(checkpoint: Path, target: Any, train_cfg: Any, limit_train: int | None, data_dir: Any) -> float:
    """Integer accuracy of ``checkpoint`` frozen for ``target``, on the run's validation split."""
    from qsnn_deploy.data.loaders import load_split, train_val_split
    from qsnn_deploy.frontends.torch_qat import freeze
    from qsnn_deploy.sim import simulate_split
    from qsnn_deploy.targets import load_target
    from qsnn_deploy.targets.rules import check_target
    from qsnn_deploy.training.checkpoint import build_model, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    tgt = load_target(target)
    graph = freeze(build_model(ckpt), tgt)
    check_target(graph, tgt)
    steps = ckpt.model_config.timesteps
    # the trainer's validation split: same data, limit, fraction and seed (trainer._load_data)
    full = load_split(train_cfg.dataset, "train", data_dir=data_dir, timesteps=steps, limit=limit_train, seed=train_cfg.seed)
    _, val = train_val_split(full, train_cfg.val_fraction, train_cfg.seed)
    return simulate_split(graph, val.x, val.y, steps, target=tgt, progress=False).accuracy


def make_objective(settings: dict[str, Any], space: tuple[Dimension, ...], data_dir: Any = None, limit_test: int | None = None):
    """The objective of a study with these ``settings`` (see :func:`study_settings`)."""
    import optuna

    from qsnn_deploy.training.trainer import train

    p = get_preset(settings["preset"])

    def score(trial: optuna.Trial) -> float:
        model_params, train_params = split_params({d.name: d.suggest(trial) for d in space})
        model_cfg = override(p.model, timesteps=settings["timesteps"], **model_params)
        changes = dict(epochs=settings["epochs_per_trial"], seed=trial.number, dataset=settings["data"], precision=settings["precision"])
        train_cfg = override(p.train, **train_params, **changes)

        def on_epoch(row: dict[str, Any]) -> None:
            val = row["val_acc"]
            if val is None or not math.isfinite(val):
                raise QsnnError(f"validation accuracy is {val} at epoch {row['epoch']}")
            trial.report(val, row["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation accuracy {val:.4f} at epoch {row['epoch']}")

        with tempfile.TemporaryDirectory(prefix="qsnn-tune-") as run_dir:
            limit_train = settings["limit_train"]
            result = train(
                model_cfg,
                train_cfg,
                run_dir,
                preset=p.name,
                data_dir=data_dir,
                limit_train=limit_train,
                limit_test=limit_test,
                progress=False,
                on_epoch=on_epoch,
            )
            trial.set_user_attr("val_acc", float(result.best_val_acc))
            if settings["target"] is None:
                return float(result.best_val_acc)
            acc = deployed_accuracy(Path(run_dir) / "best.pt", settings["target"], train_cfg, limit_train, data_dir)
            trial.set_user_attr("deployed_acc", acc)
            return acc

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("seed", trial.number)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which process ran it
        try:
            return score(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            # Optuna marks the trial failed but keeps no reason: store it for the report
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            raise

    return objective


def study_settings(
    preset: str,
    *,
    epochs_per_trial: int,
    limit_train: int | None,
    data: str | None,
    timesteps: int | None,
    target: Any,
    space,
    precision: str = "fp32",
) -> dict:
    """What every trial of a study shares; workers of one study must agree on it."""
    get_preset(preset)
    if epochs_per_trial < 1:
        raise QsnnError(f"epochs per trial must be >= 1, got {epochs_per_trial}")
    check_precision(precision)
    target_name = target if target is None or isinstance(target, str) else target.name
    return {
        "preset": preset,
        "epochs_per_trial": epochs_per_trial,
        "limit_train": limit_train,
        "data": data,
        "timesteps": timesteps,
        "target": target_name,
        "space": {d.name: d.to_dict() for d in space},
        "precision": precision,
    }


def _check_settings(study: Any, settings: dict[str, Any]) -> None:
    """Record the settings on a new study; refuse a worker whose settings differ from the study's."""
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
        return
    stored = {**_SETTING_DEFAULTS, **stored}  # studies begun before a setting existed ran its default
    differ = [f"{k}: study {stored.get(k)!r}, this worker {v!r}" for k, v in settings.items() if stored.get(k) != v]
    if differ:
        raise QsnnError(f"study {study.study_name!r} was started with other settings; " + "; ".join(differ))


class StopAfterFailures:
    """Optuna callback: stop this worker after ``limit`` failed trials in a row (a broken setup, not bad luck)."""

    def __init__(self, limit: int):
        self.limit, self.in_a_row = limit, 0

    def __call__(self, study: Any, trial: Any) -> None:
        self.in_a_row = self.in_a_row + 1 if trial.state.name == "FAIL" else 0
        if self.in_a_row >= self.limit:
            study.stop()


def count_finished(study: Any) -> int:
    import optuna

    states = tuple(getattr(optuna.trial.TrialState, s) for s in FINISHED)
    return len(study.get_trials(deepcopy=False, states=states))


def run_tune(
    preset: str,
    study: str,
    *,
    storage: str | None = None,
    trials: int = 10,
    epochs_per_trial: int = 5,
    limit_train: int | None = None,
    limit_test: int | None = None,
    timeout: float | None = None,
    data: str | None = None,
    data_dir: Any = None,
    timesteps: int | None = None,
    space: tuple[Dimension, ...] = SEARCH_SPACE,
    target: Any = None,
    pruner: str = "median",
    precision: str = "fp32",
    heartbeat: int | None = DEFAULT_HEARTBEAT,
    max_failures: int = DEFAULT_MAX_FAILURES,
    progress: bool = False,
) -> Any:
    """Work as one worker on ``study`` until it holds ``trials`` finished trials; returns the study.

    Finished = complete or pruned. A failed trial (crash, NaN, a killed worker) is recorded with
    its reason, does not count, and the worker goes on, unless ``max_failures`` of its trials
    failed in a row: then the setup is broken and the worker stops. With W workers the study
    may finish up to W - 1 trials more than asked (each checks the count after its trial).
    """
    import optuna
    from tqdm import tqdm

    shared = dict(epochs_per_trial=epochs_per_trial, limit_train=limit_train, data=data, timesteps=timesteps, target=target)
    settings = study_settings(preset, **shared, space=space, precision=precision)
    s = optuna.create_study(
        study_name=study,
        storage=open_storage(storage or default_storage(study), heartbeat),
        load_if_exists=True,
        direction="maximize",
        # constant liar: a worker treats the trials others are running as already bad, so parallel workers spread out
        sampler=optuna.samplers.TPESampler(constant_liar=True),
        pruner=_pruner(pruner, epochs_per_trial),
    )
    _check_settings(s, settings)
    missing = trials - count_finished(s)
    if missing <= 0:
        return s
    stop_at_total = optuna.study.MaxTrialsCallback(trials, states=tuple(getattr(optuna.trial.TrialState, n) for n in FINISHED))
    objective = make_objective(settings, space, data_dir=data_dir, limit_test=limit_test)
    # catch: a trial that raises is recorded as failed with its reason, and the study goes on
    # the bar counts the whole study's finished trials, those of other workers too
    with tqdm(total=trials, initial=trials - missing, desc=f"study {study}", unit="trial", disable=not progress) as bar:

        def show(study_now: Any, trial: Any) -> None:
            bar.n = count_finished(study_now)
            bar.set_postfix(best=f"{study_now.best_value:.4f}" if bar.n else "-", last=trial.state.name.lower())

        callbacks = [stop_at_total, StopAfterFailures(max_failures), show]
        s.optimize(objective, timeout=timeout, catch=(Exception,), callbacks=callbacks)
    return s


def load_study(study: str, storage: str | None = None) -> Any:
    """An existing study, for a report.

    Raises:
        QsnnError: no study of that name in the storage.
    """
    import optuna

    url = storage or default_storage(study)
    local_file = (
        url.removeprefix("journal:") if is_journal(url) else url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
    )
    if local_file is not None and not Path(local_file).is_file():  # opening it would create an empty one
        raise QsnnError(f"no study {study!r}: storage file {local_file} does not exist (give --storage)")
    store = open_storage(url, heartbeat=None)
    try:
        return optuna.load_study(study_name=study, storage=store)
    except KeyError:
        names = [x.study_name for x in optuna.get_all_study_summaries(store)]
        raise QsnnError(f"no study {study!r} in {url}; it holds: {', '.join(names) or 'none'}") from None


__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_MAX_FAILURES",
    "StopAfterFailures",
    "PRUNERS",
    "SEARCH_SPACE",
    "count_finished",
    "default_storage",
    "load_study",
    "open_storage",
    "run_tune",
]
