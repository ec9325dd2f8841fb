"""``qsnn-deploy sweep``: freeze and check one checkpoint for several widths of a target."""

from __future__ import annotations

from pathlib import Path

import click

from qsnn_deploy.app.options import backend_option, data_options


class IntValues(click.ParamType):
    """``16..40`` (step 4), ``16..40:2``, ``16,24,32`` or ``24``; a malformed one is a usage error."""

    name = "LO..HI[:STEP]|A,B,..."

    def convert(self, value, param, ctx):
        from qsnn_deploy.app.sweep import parse_int_values
        from qsnn_deploy.errors import QsnnError

        if isinstance(value, list):
            return value
        try:
            return parse_int_values(value)
        except QsnnError as exc:
            self.fail(str(exc), param, ctx)


@click.command()
@click.argument("model_path", metavar="CHECKPOINT", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--target", default="int4-core", show_default=True, help="Base target profile (name or JSON file) the variants change.")
@click.option(
    "--state-bits", type=IntValues(), default=None, help="Membrane widths, e.g. 16..40 or 16..40:2 or 24,32.  [default: the target's]"
)
@click.option("--weight-bits", type=IntValues(), default=None, help="Weight widths (same syntax).  [default: the target's]")
@click.option("--decay-shift", type=IntValues(), default=None, help="Decay shifts (same syntax).  [default: the target's]")
@data_options
@click.option("--limit", type=int, default=None, help="Use N test samples (a seeded subset, the same for every variant).")
@click.option("--batch-size", type=int, default=128, show_default=True)
@backend_option
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Run variants in J worker processes.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the sweep as JSON.")
@click.option(
    "--plot", "plot_path", type=click.Path(path_type=Path), default=None, help="Write accuracy and spike-exactness against memory as a PNG."
)
@click.option("--timesteps", type=click.IntRange(min=1), default=None, help="Override the number of time steps.")
@click.option("--preset", default=None, help="Config for a plain reference-code state_dict.")
@click.option("--trust-checkpoint", is_flag=True, help="Allow full unpickling of the checkpoint (runs code in it!).")
@click.option("--quiet", is_flag=True)
def sweep(
    model_path,
    target,
    state_bits,
    weight_bits,
    decay_shift,
    data,
    data_dir,
    limit,
    batch_size,
    backend,
    jobs,
    json_path,
    plot_path,
    timesteps,
    preset,
    trust_checkpoint,
    quiet,
) -> None:
    """Freeze CHECKPOINT for each variant of a target (state width, weight width, decay shift) and compare each with the float model."""
    from qsnn_deploy.app.loading import load_eval_data
    from qsnn_deploy.app.options import load_model
    from qsnn_deploy.app.reports import write_json
    from qsnn_deploy.app.sweep import plot_sweep, print_sweep, run_sweep, sweep_json, variants
    from qsnn_deploy.errors import QsnnError

    # unfrozen: the base target may not fit the model while the variants do (e.g. --weight-bits 6 for a 6-bit model)
    dep = load_model(model_path, target, timesteps, preset, trust_checkpoint, frozen=False)
    if dep.model is None:
        raise QsnnError("sweep freezes the checkpoint once per variant: give a checkpoint, not a graph JSON")
    split = load_eval_data(dep, data, data_dir, limit)
    rows = run_sweep(
        model_path,
        dep.target,
        variants(state_bits or [], weight_bits or [], decay_shift or []),
        split.x,
        split.y,
        jobs=jobs,
        progress=not quiet,
        trust=trust_checkpoint,
        preset=preset,
        timesteps=timesteps,
        batch_size=batch_size,
        backend=backend,
    )
    doc = sweep_json(rows, model=model_path, base_target=dep.target.name, samples=len(split), requested=limit)
    print_sweep(doc)
    if json_path:
        write_json(json_path, doc)
    if plot_path:
        plot_sweep(doc, plot_path)
        click.echo(f"wrote {plot_path}")
