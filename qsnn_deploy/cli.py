"""The ``qsnn-deploy`` command line: thin wrappers around library functions.

Heavy libraries (torch, onnx, ...) are imported inside the commands, so ``--help`` is fast.
Library errors (:class:`qsnn_deploy.errors.QsnnError`) become a one-line ``Error: ...`` on
stderr and the exit status of their class (see docs/cli.md); no traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .errors import QsnnError

DATA_CHOICES = ["fmnist", "mnist", "dvs", "synthetic"]


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QsnnError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def data_options(fn):
    """--data / --data-dir, shared by every command that reads data."""
    fn = click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Folder holding the data set.")(fn)
    fn = click.option("--data", "data", type=click.Choice(DATA_CHOICES), default=None, help="Data set (default: the model's).")(fn)
    return fn


@click.group(cls=_Group)
@click.version_option(package_name="qsnn-deploy")
def cli() -> None:
    """Train, freeze, export, simulate and check quantized spiking neural networks."""


@cli.command()
@click.option("--preset", default="fmnist-int4", show_default=True, help="Recipe of Table I (see `qsnn-deploy presets`).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Run directory.")
@click.option("--epochs", type=int, default=None)
@click.option("--timesteps", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--schedule", type=click.Choice(["none", "step", "loss-step", "cosine"]), default=None)
@click.option("--patience", type=int, default=None)
@click.option("--weight-bits", type=int, default=None, help="2..8, or 32 for float weights.")
@click.option("--limit-train", type=int, default=None, help="Use N training samples (before the validation split).")
@click.option("--limit-test", type=int, default=None)
@click.option("--seed", type=int, default=None)
@data_options
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--force", is_flag=True, help="Start over even if --out holds a run.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(preset, out_dir, epochs, timesteps, batch_size, lr, schedule, patience, weight_bits, limit_train, limit_test, seed,
          data, data_dir, resume, force, quiet) -> None:
    """Train a QSNN with the paper's QAT recipe (resumable)."""
    from .config import get_preset, override
    from .train import train as run_train

    p = get_preset(preset)
    if timesteps is not None and timesteps < 1:
        raise click.BadParameter("must be >= 1", param_hint="--timesteps")
    model_cfg = override(p.model, timesteps=timesteps, weight_bits=weight_bits)
    train_cfg = override(p.train, epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule, patience=patience, seed=seed, dataset=data)
    result = run_train(model_cfg, train_cfg, out_dir, preset=p.name, data_dir=data_dir, limit_train=limit_train,
                       limit_test=limit_test, resume=resume, force=force, progress=not quiet)
    click.echo(f"best validation accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch}; "
               f"test accuracy there {result.test_acc_at_best:.4f}; model: {result.out_dir / 'best.pt'}")


@cli.command()
def presets() -> None:
    """List the training presets (Table I of the paper)."""
    from .config import PRESETS

    for p in PRESETS.values():
        m, t = p.model, p.train
        click.echo(f"{p.name:13s} bits={m.weight_bits:<2d} beta={m.beta} thr={m.threshold} slope={m.slope} lr={t.lr} "
                   f"bn={m.batch_norm} dropout={m.dropout} batch={t.batch_size} T={m.timesteps} {t.schedule}  # {p.note}")


def main() -> None:
    """Console entry point."""
    from .perf import reexec_with_allocator_env

    reexec_with_allocator_env("qsnn_deploy.cli", sys.argv[1:])
    cli(prog_name="qsnn-deploy")


if __name__ == "__main__":
    main()
