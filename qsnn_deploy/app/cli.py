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

from qsnn_deploy.errors import QsnnError

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
def train(
    preset,
    out_dir,
    epochs,
    timesteps,
    batch_size,
    lr,
    schedule,
    patience,
    weight_bits,
    limit_train,
    limit_test,
    seed,
    data,
    data_dir,
    resume,
    force,
    finetune_from,
    target,
    refit_from,
    quiet,
) -> None:
    """Train a QSNN with the paper's QAT recipe (resumable), or fine-tune one for a target.

    With --finetune MODEL the run starts from MODEL and trains through the target's integer
    neuron arithmetic (straight-through gradients), so the model trained is the one deployed;
    it defaults to 3 epochs annealed from 1/100 of the recipe's learning rate to 0 (cosine).

    With --refit-from LAST_PT --epochs N a new run branches off a run at the epoch of LAST_PT
    (taken from the run's history, e.g. with git) and trains the same recipe on all training
    images up to epoch N: the refit after early stopping has chosen N on the validation split.
    """
    from qsnn_deploy.training.config import get_preset, override
    from qsnn_deploy.training.trainer import train as run_train

    p = get_preset(preset)
    if timesteps is not None and timesteps < 1:
        raise click.BadParameter("must be >= 1", param_hint="--timesteps")
    if target is not None and finetune_from is None:
        raise click.BadParameter("--target is the target of --finetune; pass --finetune MODEL too", param_hint="--target")
    model_cfg, base_train, preset_name, init_from, refit = p.model, p.train, p.name, None, None
    from qsnn_deploy.training.checkpoint import load_checkpoint

    if refit_from is not None:
        if epochs is None:
            raise click.BadParameter("give --epochs, the epoch to refit up to (the one early stopping chose)", param_hint="--refit-from")
        refit = load_checkpoint(refit_from)
    if finetune_from is not None:
        init_from = load_checkpoint(finetune_from)
        model_cfg, preset_name = init_from.model_config, init_from.preset or p.name
        base_train = init_from.train_config or p.train
        # a trained model sits at an LR minimum: anneal gently from there, one cosine half-period
        epochs = 3 if epochs is None else epochs
        lr = base_train.lr / 100 if lr is None else lr
        schedule = schedule or "cosine"
        base_train = override(base_train, cosine_period_epochs=max(epochs, 1))
        target = target or "int4-core"
    model_cfg = override(model_cfg, timesteps=timesteps, weight_bits=weight_bits)
    train_cfg = override(
        base_train, epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule, patience=patience, seed=seed, dataset=data
    )
    result = run_train(
        model_cfg,
        train_cfg,
        out_dir,
        preset=preset_name,
        data_dir=data_dir,
        limit_train=limit_train,
        limit_test=limit_test,
        resume=resume,
        force=force,
        progress=not quiet,
        init_from=init_from,
        target=target,
        refit_from=refit,
    )
    if result.best_val_acc is None:
        click.echo(
            f"refit to epoch {result.best_epoch} (no validation split); test accuracy {result.test_acc_at_best:.4f}; "
            f"model: {result.out_dir / 'best.pt'}"
        )
    else:
        click.echo(
            f"best validation accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch}; "
            f"test accuracy there {result.test_acc_at_best:.4f}; model: {result.out_dir / 'best.pt'}"
        )


@cli.command()
def presets() -> None:
    """List the training presets (Table I of the paper)."""
    from qsnn_deploy.training.config import PRESETS

    for p in PRESETS.values():
        m, t = p.model, p.train
        click.echo(
            f"{p.name:13s} bits={m.weight_bits:<2d} beta={m.beta} thr={m.threshold} slope={m.slope} lr={t.lr} "
            f"bn={m.batch_norm} dropout={m.dropout} batch={t.batch_size} T={m.timesteps} {t.schedule}  # {p.note}"
        )


def model_options(fn):
    """Options shared by every command that takes a MODEL (checkpoint or graph JSON)."""
    fn = click.option("--trust-checkpoint", is_flag=True, help="Allow full unpickling of the checkpoint (runs code in it!).")(fn)
    fn = click.option("--preset", default=None, help="Config for a plain reference-code state_dict.")(fn)
    fn = click.option("--timesteps", type=click.IntRange(min=1), default=None, help="Override the number of time steps.")(fn)
    fn = click.option("--target", default="int4-core", show_default=True, help="Target profile name or JSON file.")(fn)
    fn = click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path, exists=True, dir_okay=False))(fn)
    return fn


def _load(model_path, target, timesteps, preset, trust_checkpoint):
    from qsnn_deploy.app.loading import load_deployable, with_timesteps

    if trust_checkpoint:
        click.echo(f"warning: --trust-checkpoint: fully unpickling {model_path}; this runs any code the file holds", err=True)
    return with_timesteps(load_deployable(model_path, target=target, trust=trust_checkpoint, preset=preset), timesteps)


@cli.command()
@model_options
@data_options
@click.option("--limit", type=int, default=None, help="Simulate the first N test samples.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--backend", type=click.Choice(["auto", "fast", "reference"]), default="auto", show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the report as JSON.")
@click.option("--quiet", is_flag=True)
def simulate(model_path, target, timesteps, preset, trust_checkpoint, data, data_dir, limit, batch_size, backend, json_path, quiet) -> None:
    """Bit-accurate integer simulation on a target: per-layer table and accuracy."""
    from qsnn_deploy.app.loading import load_eval_data
    from qsnn_deploy.app.reports import print_simulation, simulation_json, write_json
    from qsnn_deploy.sim import simulate_split
    from qsnn_deploy.targets.rules import check_target

    dep = _load(model_path, target, timesteps, preset, trust_checkpoint)
    check_target(dep.graph, dep.target)
    split = load_eval_data(dep, data, data_dir, limit)
    report = simulate_split(
        dep.graph, split.x, split.y, dep.timesteps, batch_size=batch_size, backend=backend, target=dep.target, progress=not quiet
    )
    doc = simulation_json(report, dep)
    print_simulation(doc)
    saturated = [f"{l['name']} {l['saturations']:,}" for l in doc["layers"] if l["saturations"] > 0]
    if saturated:
        click.echo(f"warning: membranes saturated (neuron-steps): {', '.join(saturated)}; see docs/arithmetic.md section 3", err=True)
    if json_path:
        write_json(json_path, doc)


@cli.command()
@model_options
@data_options
@click.option("--limit", type=int, default=None, help="Compare on the first N test samples.")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--backend", type=click.Choice(["auto", "fast", "reference"]), default="auto", show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the report as JSON.")
@click.option("--quiet", is_flag=True)
def parity(model_path, target, timesteps, preset, trust_checkpoint, data, data_dir, limit, batch_size, backend, json_path, quiet) -> None:
    """Float QAT model vs integer deployment: accuracy and spike-by-spike agreement."""
    from qsnn_deploy.app.loading import load_eval_data
    from qsnn_deploy.app.parity import run_parity
    from qsnn_deploy.app.reports import print_parity, write_json
    from qsnn_deploy.errors import QsnnError

    dep = _load(model_path, target, timesteps, preset, trust_checkpoint)
    if dep.model is None:
        raise QsnnError("parity needs the float model: give a checkpoint, not a graph JSON")
    split = load_eval_data(dep, data, data_dir, limit)
    report = run_parity(
        dep.model, dep.graph, split.x, split.y, target=dep.target, batch_size=batch_size, backend=backend, progress=not quiet
    )
    doc = report.to_json()
    print_parity(doc)
    if json_path:
        write_json(json_path, doc)


def _warn_saturation_risks(dep) -> None:
    """Print, to stderr, every layer whose worst-case membrane can exceed its state type."""
    from qsnn_deploy.targets.rules import membrane_saturation_risks

    for message in membrane_saturation_risks(dep.graph, dep.timesteps):
        click.echo(f"warning: {message}", err=True)


@cli.command()
@model_options
@click.option("--format", "fmt", type=click.Choice(["json", "qonnx", "onnx", "nir"]), required=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output file.")
@click.option("--unroll", is_flag=True, help="ONNX/QONNX: unroll all T steps into one graph.")
@click.option("--golden", type=int, default=None, help="JSON: add N test samples with expected spike counts.")
@data_options
@click.option("--nir-dialect", type=click.Choice(["norse", "snntorch"]), default="norse", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def export(
    model_path, target, timesteps, preset, trust_checkpoint, fmt, output, unroll, golden, data, data_dir, nir_dialect, force
) -> None:
    """Export the frozen integer graph (json | qonnx | onnx | nir)."""
    from qsnn_deploy.errors import OutputExistsError
    from qsnn_deploy.exporters import export as run_export

    if output.exists() and not force:
        raise OutputExistsError(f"{output} exists; pass --force to overwrite it")
    dep = _load(model_path, target, timesteps, preset, trust_checkpoint)
    _warn_saturation_risks(dep)
    golden_inputs = None
    if golden:
        from qsnn_deploy.app.loading import load_eval_data

        golden_inputs = load_eval_data(dep, data, data_dir, golden).x
    path = run_export(
        dep.graph, fmt, output, target=dep.target, timesteps=dep.timesteps, unroll=unroll, golden=golden_inputs, nir_dialect=nir_dialect
    )
    click.echo(f"wrote {path}")


@cli.command()
def targets() -> None:
    """List the built-in target profiles."""
    from qsnn_deploy.targets import available_targets, load_target

    for name in available_targets():
        t = load_target(name)
        click.echo(
            f"{t.name}: weights {t.weight.name}, inputs {t.input.name}, accumulator {t.accumulator.name}, "
            f"state {t.state.name}, decay >> {t.decay_shift} ({t.rounding}), {t.overflow}, {t.compare}, {t.reset}/{t.reset_timing}"
        )
        click.echo(f"    {t.description}")


@cli.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True)
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Checkpoint to demo (default: the shipped Fashion-MNIST int4 model).",
)
@click.option("--limit", type=int, default=None, help="Use N test images.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Folder holding Fashion-MNIST.")
@click.option("--quiet", is_flag=True)
def demo(out_dir, model_path, limit, data_dir, quiet) -> None:
    """Freeze the shipped model, export every format, simulate on int4-core and print parity."""
    from qsnn_deploy.app.demo import run_demo

    run_demo(out_dir, model_path=model_path, limit=limit, data_dir=data_dir, progress=not quiet)


def main() -> None:
    """Console entry point."""
    from qsnn_deploy.app.perf import reexec_with_allocator_env

    reexec_with_allocator_env("qsnn_deploy.app.cli", sys.argv[1:])
    cli(prog_name="qsnn-deploy")


if __name__ == "__main__":
    main()
