"""Which model and training configs a run uses: a preset, overrides, and the fine-tune policy.

The command line passes the user's flags here unchanged (``None`` = not given); the policy of
what a fine-tune or a refit defaults to lives here, not in the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.config import ModelConfig, TrainConfig, get_preset, override

#: fine-tuning through a target's arithmetic: a trained model sits at an LR minimum, so anneal
#: gently from there over one cosine half-period (measured in docs/arithmetic.md section 5)
FINETUNE_EPOCHS = 3
FINETUNE_LR_FACTOR = 1 / 100
FINETUNE_SCHEDULE = "cosine"
FINETUNE_DEFAULT_TARGET = "int4-core"


@dataclass(frozen=True)
class RunRecipe:
    """Everything :func:`qsnn_deploy.training.trainer.train` needs besides paths and flags."""

    model: ModelConfig
    train: TrainConfig
    preset: str
    init_from: Any = None
    refit_from: Any = None
    target: Any = None


def finetune_config(base: TrainConfig, *, epochs: int | None = None, lr: float | None = None, schedule: str | None = None) -> TrainConfig:
    """The fine-tune policy: ``FINETUNE_EPOCHS`` epochs, ``lr * FINETUNE_LR_FACTOR``, cosine to 0."""
    epochs = FINETUNE_EPOCHS if epochs is None else epochs
    return override(
        base,
        epochs=epochs,
        lr=base.lr * FINETUNE_LR_FACTOR if lr is None else lr,
        schedule=schedule or FINETUNE_SCHEDULE,
        cosine_period_epochs=max(epochs, 1),
    )


def resolve_recipe(
    preset: str,
    *,
    finetune_from: Any = None,
    refit_from: Any = None,
    target: Any = None,
    model_changes: dict[str, Any] | None = None,
    train_changes: dict[str, Any] | None = None,
) -> RunRecipe:
    """Build a run's configs from a preset (or the checkpoint fine-tuned) and the user's changes.

    Args:
        preset: preset name; the base of a new run.
        finetune_from: a loaded checkpoint to fine-tune through ``target``'s arithmetic; its own
            configs replace the preset's and the fine-tune policy fills the changes not given.
        refit_from: a loaded run checkpoint (a ``last.pt``) to continue on all training data
            up to ``train_changes["epochs"]``, which is then required.
        target: the fine-tune target (name or profile); only with ``finetune_from``.
        model_changes, train_changes: field -> value, ``None`` values ignored.

    Raises:
        QsnnError: a target without a fine-tune, or a refit without its epoch count.
    """
    model_changes, train_changes = dict(model_changes or {}), dict(train_changes or {})
    if target is not None and finetune_from is None:
        raise QsnnError("a target is the target of a fine-tune; give the model to fine-tune too (--finetune MODEL)")
    if refit_from is not None and train_changes.get("epochs") is None:
        raise QsnnError("a refit needs the epoch to refit up to (the one early stopping chose): give --epochs")
    p = get_preset(preset)
    model_cfg, train_cfg, preset_name = p.model, p.train, p.name
    if finetune_from is not None:
        model_cfg, preset_name = finetune_from.model_config, finetune_from.preset or p.name
        base = finetune_from.train_config or p.train
        train_cfg = finetune_config(
            base, epochs=train_changes.pop("epochs", None), lr=train_changes.pop("lr", None), schedule=train_changes.pop("schedule", None)
        )
        train_cfg = override(train_cfg, precision="fp32")  # the target's arithmetic needs fp32 currents, however MODEL was trained
        target = target or FINETUNE_DEFAULT_TARGET
    return RunRecipe(
        model=override(model_cfg, **model_changes),
        train=override(train_cfg, **train_changes),
        preset=preset_name,
        init_from=finetune_from,
        refit_from=refit_from,
        target=target,
    )


__all__ = ["FINETUNE_EPOCHS", "FINETUNE_LR_FACTOR", "RunRecipe", "finetune_config", "resolve_recipe"]
