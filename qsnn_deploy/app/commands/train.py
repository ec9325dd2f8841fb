"""``qsnn-deploy train``: the paper's QAT recipe, a target-aware fine-tune, or a refit."""

from __future__ import annotations

from pathlib import Path

import click

from qsnn_deploy.app.options import data_options
from qsnn_deploy.training.config import SCHEDULES

#: flags that override the model config and the training config, by field name
MODEL_FLAGS = ("timesteps", "weight_bits")
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "schedule", "patience", "seed")


@click.command()
@click.option("--preset", default="fmnist-int4", show_default=True, help="Recipe of Table I (see `qsnn-deploy presets`).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Run directory.")
@click.option("--epochs", type=int, default=None)
@click.option("--timesteps", type=click.IntRange(min=1), default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None)
@click.option("--patience", type=int, default=None)
@click.option("--weight-bits", type=int, default=None, help="2..8, or 32 for float weights.")
@click.option("--limit-train", type=int, default=None, help="Use N training samples (before the validation split).")
@click.option("--limit-test", type=int, default=None)
@click.option("--seed", type=int, default=None)
@data_options
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--force", is_flag=True, help="Start over even if --out holds a run.")
@click.option(
    "--finetune",
    "finetune_from",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Fine-tune this trained checkpoint with the target's integer LIF arithmetic in the forward pass.",
)
@click.option("--target", default=None, help="Target of --finetune (name or JSON file).  [default: int4-core]")
@click.option(
    "--refit-from",
    "refit_from",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Continue this run checkpoint (a last.pt) on the whole training set, validation split included, "
    "up to --epochs (the epoch early stopping chose); best.pt is then the last epoch.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(preset, out_dir, finetune_from, refit_from, target, data, quiet, **flags) -> None:
    """Train a QSNN with the paper's QAT recipe (resumable), or fine-tune one for a target.

    With --finetune MODEL the run starts from MODEL and trains through the target's integer
    neuron arithmetic (straight-through gradients), so the model trained is the one deployed;
    it defaults to 3 epochs annealed from 1/100 of the recipe's learning rate to 0 (cosine).

    With --refit-from LAST_PT --epochs N a new run branches off a run at the epoch of LAST_PT
    (taken from the run's history, e.g. with git) and trains the same recipe on all training
    images up to epoch N: the refit after early stopping has chosen N on the validation split.
    """
    from qsnn_deploy.training.checkpoint import load_checkpoint
    from qsnn_deploy.training.recipe import resolve_recipe
    from qsnn_deploy.training.trainer import train as run_train

    if target is not None and finetune_from is None:
        raise click.BadParameter("--target is the target of --finetune; pass --finetune MODEL too", param_hint="--target")
    if refit_from is not None and flags["epochs"] is None:
        raise click.BadParameter("give --epochs, the epoch to refit up to (the one early stopping chose)", param_hint="--refit-from")
    recipe = resolve_recipe(
        preset,
        finetune_from=load_checkpoint(finetune_from) if finetune_from is not None else None,
        refit_from=load_checkpoint(refit_from) if refit_from is not None else None,
        target=target,
        model_changes={k: flags.pop(k) for k in MODEL_FLAGS},
        train_changes={**{k: flags.pop(k) for k in TRAIN_FLAGS}, "dataset": data},
    )
    result = run_train(
        recipe.model,
        recipe.train,
        out_dir,
        preset=recipe.preset,
        progress=not quiet,
        init_from=recipe.init_from,
        target=recipe.target,
        refit_from=recipe.refit_from,
        **flags,  # data_dir, limit_train, limit_test, resume, force
    )
    click.echo(describe_result(result))


def describe_result(result) -> str:
    """One line: what the run reached and where its model is."""
    if result.best_val_acc is None:
        return (
            f"refit to epoch {result.best_epoch} (no validation split); test accuracy {result.test_acc_at_best:.4f}; "
            f"model: {result.out_dir / 'best.pt'}"
        )
    return (
        f"best validation accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch}; "
        f"test accuracy there {result.test_acc_at_best:.4f}; model: {result.out_dir / 'best.pt'}"
    )
