"""``qsnn-deploy demo``: the whole flow on the shipped model."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True)
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Checkpoint to demo (default: the shipped Fashion-MNIST int4 model with its sg-cvx readout, qsnn_deploy.DEMO_MODEL).",
)
@click.option("--limit", type=int, default=None, help="Use N test images.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Folder holding Fashion-MNIST.")
@click.option("--quiet", is_flag=True)
def demo(out_dir, model_path, limit, data_dir, quiet) -> None:
    """Freeze the shipped model, export every format, simulate on int4-core and print parity."""
    from qsnn_deploy.app.demo import run_demo

    run_demo(out_dir, model_path=model_path, limit=limit, data_dir=data_dir, progress=not quiet)
