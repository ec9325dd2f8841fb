"""``qsnn-deploy parity``: float QAT model vs integer deployment."""

from __future__ import annotations

from pathlib import Path

import click

from qsnn_deploy.app.options import backend_option, data_options, load_model, model_options


@click.command()
@model_options
@data_options
@click.option("--limit", type=int, default=None, help="Compare on the first N test samples.")
@click.option("--batch-size", type=int, default=128, show_default=True)
@backend_option
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the report as JSON.")
@click.option("--quiet", is_flag=True)
def parity(model_path, target, timesteps, preset, trust_checkpoint, data, data_dir, limit, batch_size, backend, json_path, quiet) -> None:
    """Float QAT model vs integer deployment: accuracy and spike-by-spike agreement."""
    from qsnn_deploy.app.loading import float_model, load_eval_data
    from qsnn_deploy.app.parity import run_parity
    from qsnn_deploy.app.reports import print_parity, write_json

    dep = load_model(model_path, target, timesteps, preset, trust_checkpoint)
    model = float_model(dep)
    split = load_eval_data(dep, data, data_dir, limit)
    report = run_parity(
        model,
        dep.graph,
        split.x,
        split.y,
        target=dep.target,
        batch_size=batch_size,
        backend=backend,
        progress=not quiet,
        requested=limit,
    )
    doc = report.to_json()
    print_parity(doc)
    if json_path:
        write_json(json_path, doc)
