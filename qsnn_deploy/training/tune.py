"""Hyperparameter search of the paper (Table I footnote: TPE in Optuna) over a preset.

Each trial trains ``epochs_per_trial`` epochs with :func:`qsnn_deploy.training.trainer.train`
and reports the validation accuracy after every epoch, so Optuna's MedianPruner can stop weak
trials early. The study lives in an Optuna RDB storage (default a local SQLite file), so many
processes, on many machines, can each run ``tune`` on one study as workers.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any

from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.config import get_preset, override

#: the paper's wide search space: parameter -> (low, high, log scale); model or train field
SEARCH_SPACE: dict[str, tuple[float, float, bool]] = {
    "beta": (0.3, 0.999, False),
    "threshold": (0.3, 3.0, False),
    "slope": (1.0, 15.0, False),
    "lr": (1e-4, 1e-2, True),
    "dropout": (0.0, 0.3, False),
}
_TRAIN_FIELDS = {"lr"}


def default_storage(study: str) -> str:
    return f"sqlite:///{study}.db"


def _objective(preset: str, epochs: int, limit_train: int | None, data: str | None, data_dir: Any, timesteps: int | None):
    import optuna

    from qsnn_deploy.training.trainer import train

    p = get_preset(preset)

    def objective(trial: optuna.Trial) -> float:
        params = {name: trial.suggest_float(name, lo, hi, log=log) for name, (lo, hi, log) in SEARCH_SPACE.items()}
        seed = trial.number
        trial.set_user_attr("seed", seed)
        model_cfg = override(p.model, timesteps=timesteps, **{k: v for k, v in params.items() if k not in _TRAIN_FIELDS})
        train_cfg = override(p.train, epochs=epochs, seed=seed, dataset=data, lr=params["lr"])

        def on_epoch(row: dict[str, Any]) -> None:
            val = row["val_acc"]
            if val is None or not math.isfinite(val):
                raise QsnnError(f"validation accuracy is {val} at epoch {row['epoch']}")
            trial.report(val, row["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        with tempfile.TemporaryDirectory(prefix="qsnn-tune-") as run_dir:
            result = train(
                model_cfg, train_cfg, run_dir, preset=p.name, data_dir=data_dir, limit_train=limit_train, progress=False, on_epoch=on_epoch
            )
        return float(result.best_val_acc)

    return objective


def run_tune(
    preset: str,
    study: str,
    *,
    storage: str | None = None,
    trials: int = 10,
    epochs_per_trial: int = 5,
    limit_train: int | None = None,
    timeout: float | None = None,
    data: str | None = None,
    data_dir: Any = None,
    timesteps: int | None = None,
) -> Any:
    """Run ``trials`` trials of the study as one worker; returns the Optuna study."""
    import optuna

    s = optuna.create_study(
        study_name=study,
        storage=storage or default_storage(study),
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(),
        pruner=optuna.pruners.MedianPruner(n_warmup_steps=1),
    )
    objective = _objective(preset, epochs_per_trial, limit_train, data, data_dir, timesteps)
    # catch: a trial that raises is recorded as failed with its reason, and the study goes on
    s.optimize(objective, n_trials=trials, timeout=timeout, catch=(Exception,))
    return s
