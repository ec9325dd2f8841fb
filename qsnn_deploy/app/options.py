"""Options shared by several commands, with their choices taken from the library's registries."""

from __future__ import annotations

from pathlib import Path

import click

from qsnn_deploy.data.loaders import DATASET_NAMES
from qsnn_deploy.sim import BACKENDS


def data_options(fn):
    """--data / --data-dir, shared by every command that reads data."""
    fn = click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Folder holding the data set.")(fn)
    fn = click.option("--data", "data", type=click.Choice(DATASET_NAMES), default=None, help="Data set (default: the model's).")(fn)
    return fn


def backend_option(fn):
    """--backend: which simulator backend runs the integer graph."""
    return click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True)(fn)


def model_options(fn):
    """Options shared by every command that takes a MODEL (checkpoint or graph JSON)."""
    fn = click.option("--trust-checkpoint", is_flag=True, help="Allow full unpickling of the checkpoint (runs code in it!).")(fn)
    fn = click.option("--preset", default=None, help="Config for a plain reference-code state_dict.")(fn)
    fn = click.option("--timesteps", type=click.IntRange(min=1), default=None, help="Override the number of time steps.")(fn)
    fn = click.option("--target", default="int4-core", show_default=True, help="Target profile name or JSON file.")(fn)
    fn = click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path, exists=True, dir_okay=False))(fn)
    return fn


def load_model(model_path, target, timesteps, preset, trust_checkpoint):
    """The :class:`~qsnn_deploy.app.loading.Deployable` that a command's MODEL options name."""
    from qsnn_deploy.app.loading import load_deployable, with_timesteps

    if trust_checkpoint:
        click.echo(f"warning: --trust-checkpoint: fully unpickling {model_path}; this runs any code the file holds", err=True)
    return with_timesteps(load_deployable(model_path, target=target, trust=trust_checkpoint, preset=preset), timesteps)


def ignore_limits_option(fn):
    """--ignore-limits: go on when the graph breaks the target's rules (each broken rule is still printed)."""
    return click.option(
        "--ignore-limits", is_flag=True, help="Report the target's broken rules as warnings and go on (simulate or export anyway)."
    )(fn)


def check_limits(dep, ignore_limits: bool) -> None:
    """Run the target's rules on the graph: raise (exit 6) on the first report, or only warn with --ignore-limits."""
    from qsnn_deploy.errors import TargetError
    from qsnn_deploy.targets.checks import check_graph

    try:
        check_graph(dep.graph, dep.target)
    except TargetError as exc:
        if not ignore_limits:
            raise
        click.echo(f"warning: --ignore-limits: {exc}", err=True)


def warn_saturation_risks(dep) -> None:
    """Print, to stderr, every layer whose worst-case membrane can exceed its state type."""
    from qsnn_deploy.targets.rules import membrane_saturation_risks

    for message in membrane_saturation_risks(dep.graph, dep.timesteps):
        click.echo(f"warning: {message}", err=True)
