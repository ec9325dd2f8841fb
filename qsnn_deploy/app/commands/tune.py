"""``qsnn-deploy tune``: the paper's TPE search on Optuna, as one worker of a (shared) study."""

from __future__ import annotations

from pathlib import Path

import click

from qsnn_deploy.app.options import data_options
from qsnn_deploy.training.config import PRECISIONS
from qsnn_deploy.training.tune import DEFAULT_HEARTBEAT, DEFAULT_MAX_FAILURES, PRUNERS

#: exit status after Ctrl-C (128 + SIGINT), as a shell reports it
INTERRUPTED = 130


@click.command()
@click.option("--preset", default="fmnist-int4", show_default=True, help="Recipe whose hyperparameters are searched.")
@click.option("--study", required=True, help="Study name; workers on one storage and name share the study.")
@click.option("--storage", default=None, help="sqlite:///F.db, postgresql://..., or journal:PATH / *.log.  [default: sqlite:///STUDY.db]")
@click.option(
    "--trials", type=click.IntRange(min=0), default=None, help="Finished trials the study should hold.  [default: 10; 0 with --report]"
)
@click.option("--epochs-per-trial", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--limit-train", type=click.IntRange(min=2), default=None, help="Train each trial on N samples (before the validation split)."
)
@click.option("--limit-test", type=click.IntRange(min=1), default=None, help="Test samples the trainer logs per epoch (not scored).")
@click.option("--timesteps", type=click.IntRange(min=1), default=None, help="Override the preset's time steps.")
@data_options
@click.option("--timeout", type=click.FloatRange(min=0), default=None, help="This worker starts no trial after S seconds.")
@click.option(
    "--space", "space_file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None, help="Search space (JSON/TOML)."
)
@click.option("--target", default=None, help="Score trials by the deployed integer accuracy on this target (name or JSON).")
@click.option("--pruner", type=click.Choice(PRUNERS), default="median", show_default=True)
@click.option(
    "--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True, help="Each trial's training precision (as in train)."
)
@click.option(
    "--heartbeat", type=click.IntRange(min=1), default=DEFAULT_HEARTBEAT, show_default=True, help="Seconds between heartbeats (RDB)."
)
@click.option(
    "--max-failures",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_FAILURES,
    show_default=True,
    help="Stop after N failed trials in a row.",
)
@click.option("--report", is_flag=True, help="Print the best trials; write the best config and PNG plots.")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False), default=None, help="[default: STUDY-report]")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Trials in the report table.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-trial log.")
def tune(study, trials, space_file, report, report_dir, top, quiet, **run_options) -> None:
    """Search a preset's hyperparameters with Optuna's TPE as one worker of a study.

    Run the same command on many machines with one --storage URL (PostgreSQL) and each
    process works on the same study; rerun it after a stop to continue. --trials is the
    study's total of finished (complete or pruned) trials. See docs/tune.md.
    """
    import optuna

    from qsnn_deploy.training.tune import load_study
    from qsnn_deploy.training.tune_space import SEARCH_SPACE, load_space

    trials = (0 if report else 10) if trials is None else trials
    optuna.logging.set_verbosity(optuna.logging.WARNING if quiet else optuna.logging.INFO)
    space = load_space(space_file) if space_file is not None else SEARCH_SPACE
    if trials > 0:
        work(study, trials, space=space, progress=not quiet, **run_options)
    if report:
        print_report(load_study(study, run_options["storage"]), report_dir or Path(f"{study}-report"), top)


def work(study: str, trials: int, *, preset: str, storage: str | None, **options) -> None:
    """Run trials as one worker; Ctrl-C says what the study holds and exits with :data:`INTERRUPTED`."""
    from qsnn_deploy.training.tune import count_finished, load_study, run_tune

    try:
        s = run_tune(preset, study, storage=storage, trials=trials, **options)
    except KeyboardInterrupt:
        s = load_study(study, storage)
        click.echo(
            f"interrupted: the running trial is recorded as failed; study {study!r} holds {count_finished(s)} finished trials; "
            "run the same command again to continue",
            err=True,
        )
        raise SystemExit(INTERRUPTED) from None
    click.echo(f"study {study!r}: {count_finished(s)} finished trials (asked {trials})")


def print_report(study, out_dir: Path, top: int) -> None:
    """The best trials as a table, then what the report wrote."""
    from rich.console import Console
    from rich.table import Table

    from qsnn_deploy.training.tune_report import write_report

    doc = write_report(study, out_dir, top)
    names = list(doc["best"][0]["params"]) if doc["best"] else []
    table = Table(title=f"study {doc['study']}: " + ", ".join(f"{n} {s.lower()}" for s, n in doc["states"].items()))
    for column in ["#", "value", "val acc", "deployed", "seed", "s", *names]:
        table.add_column(column, justify="right")
    for row in doc["best"]:
        cells = [row["number"], row["value"], row["val_acc"], row["deployed_acc"], row["seed"], row["seconds"]]
        cells += [row["params"].get(n) for n in names]
        table.add_row(*("-" if c is None else f"{c:.4g}" if isinstance(c, float) else str(c) for c in cells))
    Console(width=160).print(table)
    for row in doc["failed"]:
        click.echo(f"failed trial {row['number']}: {row['fail_reason'] or 'no reason recorded (killed or interrupted worker)'}")
    click.echo(f"best config: {doc['config']}  (qsnn-deploy train --config {doc['config']} --out DIR)")
    for path in doc["plots"]:
        click.echo(f"plot: {path}")
    for why in doc["plots_skipped"]:
        click.echo(f"plot skipped: {why}")
