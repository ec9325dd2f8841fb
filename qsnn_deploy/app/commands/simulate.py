"""``qsnn-deploy simulate``: the integer graph on a target, bit-accurately, with per-layer figures."""

from __future__ import annotations

from pathlib import Path

import click

from qsnn_deploy.app.options import backend_option, check_limits, data_options, ignore_limits_option, load_model, model_options


@click.command()
@model_options
@data_options
@click.option("--limit", type=int, default=None, help="Simulate the first N test samples.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@backend_option
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the report as JSON.")
@click.option("--quiet", is_flag=True)
@ignore_limits_option
def simulate(
    model_path, target, timesteps, preset, trust_checkpoint, data, data_dir, limit, batch_size, backend, json_path, quiet, ignore_limits
) -> None:
    """Bit-accurate integer simulation on a target: per-layer table and accuracy."""
    from qsnn_deploy.app.loading import load_eval_data
    from qsnn_deploy.app.reports import print_simulation, simulation_json, write_json
    from qsnn_deploy.sim import simulate_split

    dep = load_model(model_path, target, timesteps, preset, trust_checkpoint)
    check_limits(dep, ignore_limits)
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
