"""The resume / refit / fine-tune policy of a training run: what it continues and what it keeps.

``resume`` continues the run in the output folder from its ``last.pt``; ``refit_from`` branches a
new run off a run's ``last.pt`` onto the whole training set; ``init_from`` (fine-tuning) only
takes the starting weights. Only the epoch budget and patience may change when a run continues.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsnn_deploy.errors import CheckpointError, OutputExistsError, QsnnError
from qsnn_deploy.training.checkpoint import Checkpoint, load_checkpoint
from qsnn_deploy.training.config import ModelConfig, TrainConfig


@dataclass
class Plan:
    """What a run trains, after the resume / refit / fine-tune policy has been applied."""

    model_cfg: ModelConfig
    train_cfg: TrainConfig
    preset: str | None
    limit_train: int | None
    limit_test: int | None
    target: Any
    prev: Checkpoint | None  # the checkpoint whose full training state the run continues


def restore(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out: Path,
    *,
    preset: str | None,
    limit_train: int | None,
    limit_test: int | None,
    resume: bool,
    force: bool,
    init_from: Checkpoint | None,
    target: Any,
    refit_from: Checkpoint | None,
) -> Plan:
    """The resume / refit policy: which checkpoint a run continues and which settings it keeps."""
    last_path = out / "last.pt"
    prev: Checkpoint | None = None
    if refit_from is not None and (resume or init_from is not None):
        raise QsnnError(
            "a refit starts a new run from a run's last.pt: not with --resume or --finetune (resume a refit later with --resume alone)"
        )
    if resume:
        if not last_path.is_file():
            raise CheckpointError(f"--resume: no {last_path} to resume from")
        prev = load_checkpoint(last_path)
    elif refit_from is not None:
        prev = refit_from
    if not resume and last_path.exists() and not force:
        raise OutputExistsError(f"{out} already holds a run (last.pt); use --resume to continue it or --force to start over")
    if prev is None:
        return Plan(model_cfg, train_cfg, preset, limit_train, limit_test, target, None)
    if prev.train_state is None or prev.train_config is None:
        raise CheckpointError(f"{prev.source}: has no training state to continue from (a run's last.pt has it)")
    if refit_from is not None and prev.train_state.get("target"):
        raise QsnnError(f"{prev.source}: is a fine-tuning run; refit the QAT run it started from")
    if refit_from is not None and train_cfg.epochs <= prev.train_state["epoch"]:
        raise QsnnError(f"refit up to epoch {train_cfg.epochs}: {prev.source} is already at epoch {prev.train_state['epoch']}")
    # Only the epoch budget and patience may change on resume; the recipe stays (a refit
    # changes the data split only).
    changes: dict[str, Any] = {"epochs": train_cfg.epochs, "patience": train_cfg.patience}
    if refit_from is not None:
        changes["val_fraction"] = 0.0
    from qsnn_deploy.targets import TargetProfile

    saved_target = prev.train_state.get("target")
    return Plan(
        model_cfg=prev.model_config,
        train_cfg=TrainConfig.from_dict({**prev.train_config.to_dict(), **changes}),
        preset=prev.preset,
        limit_train=prev.train_state.get("limit_train", limit_train),
        limit_test=prev.train_state.get("limit_test", limit_test),
        target=TargetProfile.from_dict(saved_target) if saved_target else None,
        prev=prev,
    )
