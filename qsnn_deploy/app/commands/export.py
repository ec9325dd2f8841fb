"""``qsnn-deploy export``: write the frozen integer graph in one of the registered formats."""

from __future__ import annotations

from pathlib import Path

import click

from qsnn_deploy.app.options import check_limits, data_options, ignore_limits_option, load_model, model_options, warn_saturation_risks
from qsnn_deploy.exporters import FORMATS
from qsnn_deploy.exporters.nir_dialects import DIALECTS


@click.command()
@model_options
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Output file or folder.  [default: MODEL's name with the format's suffix, in the current directory]",
)
@click.option("--unroll", is_flag=True, help="ONNX/QONNX: unroll all T steps into one graph.")
@click.option(
    "--golden", type=click.IntRange(min=1), default=None, help="Add N test samples with their simulated outputs (formats that take it)."
)
@click.option("--trace", is_flag=True, help="With --golden: also store every LIF layer's membrane at every step.")
@data_options
@click.option("--nir-dialect", type=click.Choice(list(DIALECTS)), default=None, help="NIR: the reader's conventions.  [default: norse]")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@ignore_limits_option
def export(
    model_path,
    target,
    timesteps,
    preset,
    trust_checkpoint,
    fmt,
    output,
    unroll,
    golden,
    trace,
    data,
    data_dir,
    nir_dialect,
    force,
    ignore_limits,
) -> None:
    """Export the frozen integer graph in one of the registered formats (see docs/formats.md)."""
    from qsnn_deploy.errors import OutputExistsError
    from qsnn_deploy.exporters import export as run_export

    if trace and not golden:
        raise click.BadParameter("--trace records the membranes of golden samples; give --golden N too", param_hint="--trace")
    output = output if output is not None else FORMATS[fmt].default_output(model_path)
    if output.exists() and not force:
        raise OutputExistsError(f"{output} exists; pass --force to overwrite it")
    dep = load_model(model_path, target, timesteps, preset, trust_checkpoint)
    warn_saturation_risks(dep)
    if FORMATS[fmt].checks_target:
        check_limits(dep, ignore_limits)
    golden_inputs = golden_source = None
    if golden:
        from qsnn_deploy.app.loading import eval_data_name, load_eval_data
        from qsnn_deploy.exporters.golden import GoldenSource

        split = load_eval_data(dep, data, data_dir, golden)
        golden_inputs = split.x
        golden_source = GoldenSource(eval_data_name(dep, data), "test", tuple(int(i) for i in split.sample_indices()))
    path = run_export(
        dep.graph,
        fmt,
        output,
        target=dep.target,
        timesteps=dep.timesteps,
        unroll=unroll,
        golden=golden_inputs,
        trace=trace,
        golden_source=golden_source,
        nir_dialect=nir_dialect,
    )
    click.echo(f"wrote {path}")
