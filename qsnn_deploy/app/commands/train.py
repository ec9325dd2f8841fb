"""``qsnn-deploy train``: the paper's QAT recipe, a target-aware fine-tune, or a refit."""

from __future__ import annotations

from pathlib import Path

import click

from qsnn_deploy.app.options import data_options
from qsnn_deploy.training.config import PRECISIONS, SCHEDULES
from qsnn_deploy.training.convex.methods import METHODS  # the method registry (light: no torch, no cvxpy)

#: flags that override the model config and the training config, by field name
MODEL_FLAGS = ("timesteps", "weight_bits")
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "schedule", "patience", "seed", "precision")
#: options of the convex stack methods (docs/convex.md)
STACK_FLAGS = ("stacks", "widths", "features", "loss", "penalty", "solver", "strengths")


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
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=None,
    help="Training steps in fp32 (the per-step loop up to float rounding) or bf16 (the big conv and the dense layer in bfloat16; docs/tune.md). "
    "Kept on --resume; evaluation is fp32.  [default: fp32]",
)
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
@click.option("--target", default=None, help="Target of --finetune or --init (name or JSON file).  [default: int4-core]")
@click.option(
    "--refit-from",
    "refit_from",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Continue this run checkpoint (a last.pt) on the whole training set, validation split included, "
    "up to --epochs (the epoch early stopping chose); best.pt is then the last epoch.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Run config (JSON/TOML: preset, [model], [train] fields), e.g. from `tune --report`; flags given win.",
)
@click.option(
    "--method",
    type=click.Choice(tuple(METHODS)),
    default="sg",
    show_default=True,
    help="sg: surrogate gradients; cvx: witness stacks + convex readout; sg-cvx: readout refit convexly; cvx-sg: convex init, then surrogate (docs/convex.md).",
)
@click.option("--stacks", type=click.IntRange(min=1), default=None, help="cvx methods: parallel LIF stacks K.  [default: 128]")
@click.option("--widths", default=None, help="cvx methods: neurons per layer of each stack, e.g. 4,4.  [default: 4,4]")
@click.option("--features", type=click.Choice(["last", "count"]), default=None, help="cvx methods: last-step spikes or spike counts.")
@click.option(
    "--loss",
    type=click.Choice(["hinge", "sqhinge", "softmax", "squared"]),
    default=None,
    help="cvx methods: convex loss.  [default: squared]",
)
@click.option("--penalty", type=click.Choice(["group", "l1"]), default=None, help="cvx methods: regulariser.  [default: group]")
@click.option("--solver", type=click.Choice(["auto", "cvxpy", "fista"]), default=None, help="cvx methods: solver.  [default: auto]")
@click.option("--strengths", type=click.IntRange(min=1), default=None, help="cvx methods: strengths on the path.  [default: 5]")
@click.option(
    "--init",
    "init_from",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="sg-cvx on image data: the surrogate-trained conv checkpoint whose readout is refit convexly on its "
    "integer features for --target (docs/convex.md).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(preset, out_dir, finetune_from, refit_from, target, data, method, init_from, quiet, **flags) -> None:
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

    if init_from is not None:
        _refit_conv_readout(method, init_from, target, out_dir, quiet, flags)
        return
    if _ran_stack_method(method, data, out_dir, quiet, flags):
        return
    if target is not None and finetune_from is None:
        raise click.BadParameter("--target is the target of --finetune; pass --finetune MODEL too", param_hint="--target")
    if refit_from is not None and flags["epochs"] is None:
        raise click.BadParameter("give --epochs, the epoch to refit up to (the one early stopping chose)", param_hint="--refit-from")
    model_changes = {k: flags.pop(k) for k in MODEL_FLAGS}
    train_changes = {**{k: flags.pop(k) for k in TRAIN_FLAGS}, "dataset": data}
    config_file = flags.pop("config_file")
    if config_file is not None:
        preset, model_changes, train_changes = _apply_config_file(config_file, preset, model_changes, train_changes)
    recipe = resolve_recipe(
        preset,
        finetune_from=load_checkpoint(finetune_from) if finetune_from is not None else None,
        refit_from=load_checkpoint(refit_from) if refit_from is not None else None,
        target=target,
        model_changes=model_changes,
        train_changes=train_changes,
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


def _apply_config_file(path, preset, model_changes, train_changes):
    """(preset, model changes, train changes) with a --config file under the flags given."""
    from qsnn_deploy.training.run_config import load_run_config, merge_changes

    config = load_run_config(path)
    if config.preset is not None and click.get_current_context().get_parameter_source("preset").name == "DEFAULT":
        preset = config.preset
    return (preset, *merge_changes(config, model_changes, train_changes))


def _ran_stack_method(method, data, out_dir, quiet, flags) -> bool:
    """Run a convex stack method if ``method`` and ``data`` call for one; pops the stack flags either way."""
    from qsnn_deploy.training.convex.methods import uses_stack_methods

    stack_options = {k: flags.pop(k) for k in STACK_FLAGS}
    if uses_stack_methods(method, data):
        f = flags
        _train_stacks(
            method,
            data,
            out_dir,
            f["data_dir"],
            quiet,
            stack_options,
            f["epochs"],
            f["timesteps"],
            f["batch_size"],
            f["lr"],
            f["seed"],
            f["limit_train"],
            f["limit_test"],
        )
        return True
    given = [f"--{k}" for k, v in stack_options.items() if v is not None]
    if given:
        raise click.BadParameter(f"{', '.join(given)} apply to the stack methods (cvx, sg-cvx, cvx-sg, or sg on a sequence task)")
    return False


def _train_stacks(method, data, out_dir, data_dir, quiet, stack_options, epochs, timesteps, batch_size, lr, seed, limit_train, limit_test):
    """The stack methods: every option given overrides the library's default (ConvexRun)."""
    import dataclasses

    from qsnn_deploy.training.convex.methods import ConvexRun, run_method

    if stack_options["widths"] is not None:
        try:
            stack_options["widths"] = tuple(int(w) for w in stack_options["widths"].split(","))
        except ValueError:
            raise click.BadParameter("give widths as integers separated by commas, e.g. 4,4", param_hint="--widths") from None
    changes = {**stack_options, "epochs": epochs, "timesteps": timesteps, "batch_size": batch_size, "lr": lr, "seed": seed}
    changes.update(data=data or "first-last-xor", limit_train=limit_train, limit_test=limit_test, method=method)
    run = dataclasses.replace(ConvexRun(), **{k: v for k, v in changes.items() if v is not None})
    if run.data == "seq-fmnist" and timesteps is None:
        run = dataclasses.replace(run, timesteps=28)
    final = run_method(run, out_dir, data_dir=data_dir, progress=not quiet)
    click.echo(
        f"{method} on {run.data}: test accuracy {final['test_acc']:.4f} (integer model, validation {final['val_acc']:.4f}), "
        f"{final['active_features']} of {final['features']} feature neurons used; model: {Path(out_dir) / 'best.pt'}"
    )


def _refit_conv_readout(method, init_from, target, out_dir, quiet, flags) -> None:
    """``--method sg-cvx --init MODEL``: the conv model's readout refit convexly (training/convex/conv.py)."""
    from qsnn_deploy.training.convex.conv import ConvRefit, refit

    if method != "sg-cvx":
        raise click.BadParameter("--init is the starting model of --method sg-cvx", param_hint="--init")
    refused = [k for k in ("stacks", "widths", "features", "epochs", "timesteps", "lr") if flags.get(k) is not None]
    if refused:
        raise click.BadParameter(
            f"{', '.join('--' + k.replace('_', '-') for k in refused)} do not apply to a readout refit", param_hint="--init"
        )
    given = {k: flags[k] for k in ("loss", "penalty", "solver", "strengths", "limit_train", "limit_test") if flags.get(k) is not None}
    run = ConvRefit(init=str(init_from), target=target or "int4-core", **given)
    m = refit(run, out_dir, data_dir=flags["data_dir"], progress=not quiet)
    click.echo(
        f"sg-cvx readout of {init_from}: test accuracy {m['test_acc']:.4f} (integer, validation {m['val_acc']:.4f}; "
        f"float readout {m['float_test_acc']:.4f}), {m['active_features']} of {m['features']} features used; "
        f"model: {Path(out_dir) / 'best.pt'}"
    )


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
