"""``qsnn-deploy presets`` and ``qsnn-deploy targets``: what the library has built in."""

from __future__ import annotations

import click


@click.command()
def presets() -> None:
    """List the training presets (Table I of the paper)."""
    from qsnn_deploy.training.config import PRESETS

    for p in PRESETS.values():
        m, t = p.model, p.train
        click.echo(
            f"{p.name:13s} bits={m.weight_bits:<2d} beta={m.beta} thr={m.threshold} slope={m.slope} lr={t.lr} "
            f"bn={m.batch_norm} dropout={m.dropout} batch={t.batch_size} T={m.timesteps} {t.schedule}  # {p.note}"
        )


@click.command()
def targets() -> None:
    """List the built-in target profiles."""
    from qsnn_deploy.targets import available_targets, load_target

    for name in available_targets():
        t = load_target(name)
        if t.arithmetic.current_based:
            decay = f"synapse {t.synapse_state.name}, decay x - (x >> dash) or +-1 (dash <= {t.decay_shift}), <= {t.spike_cap} spikes/step"
        else:
            decay = f"decay >> {t.decay_shift} ({t.rounding})"
        chip = f" [chip {t.chip}]" if t.chip else ""
        click.echo(
            f"{t.name}{chip}: weights {t.weight.name}, inputs {t.input.name}, accumulator {t.accumulator.name}, "
            f"state {t.state.name}, {decay}, {t.overflow}, {t.compare}, {t.reset}/{t.reset_timing}"
        )
        click.echo(f"    {t.description}")
