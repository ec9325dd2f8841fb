"""Precision sweep: freeze one checkpoint for variants of a target and measure each against the float model.

A variant changes the target profile's membrane width (``state``), weight width and decay
shift (:meth:`TargetProfile.with_changes`); everything else stays the base target's. Each
variant is frozen from the checkpoint (:func:`load_deployable`), run side by side with the
float QAT model (:func:`run_parity`), and summarised as one row: accuracies, QAT -> integer
drop, prediction agreement, identical output spike trains, per-layer spike agreement,
saturations and memory bits (weights + state + parameters, as ``simulate`` reports them).
A variant the target rules reject (e.g. weights wider than its weight type) is a row with an
``error`` instead of figures, so one bad width does not end the sweep.

The Pareto front is over (fewer memory bits, higher integer accuracy, more identical output
trains): a variant is on it when no other is at least as good in all three and better in one.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qsnn_deploy.errors import QsnnError
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.targets import TargetProfile, load_target

#: step of a ``LO..HI`` range when none is given
DEFAULT_RANGE_STEP = 4


def parse_int_values(text: str, *, default_step: int = DEFAULT_RANGE_STEP) -> list[int]:
    """The integers ``text`` names: ``16..40`` (step 4), ``16..40:2``, ``16,24,32`` or ``24``; sorted, unique."""
    values: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        try:
            if ".." in part:
                span, _, step_text = part.partition(":")
                low_text, _, high_text = span.partition("..")
                low, high = int(low_text), int(high_text)
                step = int(step_text) if step_text else default_step
                if step < 1 or high < low:
                    raise ValueError
                values.update(range(low, high + 1, step))
            else:
                values.add(int(part))
        except ValueError:
            raise QsnnError(f"{text!r}: expected LO..HI, LO..HI:STEP (HI >= LO, STEP >= 1) or a list like 16,24,32") from None
    return sorted(values)


@dataclass(frozen=True)
class Variant:
    """One point of the sweep; None keeps the base target's value."""

    state_bits: int | None = None
    weight_bits: int | None = None
    decay_shift: int | None = None

    def profile(self, base: TargetProfile) -> TargetProfile:
        """``base`` with this variant's widths, named after them (e.g. ``int4-core/s32/d24``)."""
        changes: dict[str, Any] = {}
        suffix = []
        if self.state_bits is not None:
            changes["state"] = IntType(self.state_bits, signed=True)
            suffix.append(f"s{self.state_bits}")
        if self.weight_bits is not None:
            changes["weight"] = IntType(self.weight_bits, signed=base.weight.signed, narrow=base.weight.narrow)
            suffix.append(f"w{self.weight_bits}")
        if self.decay_shift is not None:
            changes["decay_shift"] = self.decay_shift
            suffix.append(f"d{self.decay_shift}")
        return base.with_changes(name="/".join([base.name, *suffix]), **changes)


def variants(state_bits: Sequence[int], weight_bits: Sequence[int] = (), decay_shifts: Sequence[int] = ()) -> list[Variant]:
    """Every combination of the given widths (an empty sequence keeps the base target's value)."""
    return [Variant(s, w, d) for s, w, d in itertools.product(state_bits or [None], weight_bits or [None], decay_shifts or [None])]


@dataclass(frozen=True)
class SweepJob:
    """What one worker needs: picklable, so variants can run in a process pool."""

    model_path: Path
    base: TargetProfile
    variant: Variant
    x: np.ndarray
    y: np.ndarray
    trust: bool = False
    preset: str | None = None
    timesteps: int | None = None
    batch_size: int = 128
    backend: str = "auto"


def run_variant(job: SweepJob) -> dict[str, Any]:
    """Freeze the checkpoint for one variant and compare it with the float model; one sweep row."""
    from qsnn_deploy.app.loading import load_deployable, with_timesteps
    from qsnn_deploy.app.parity import run_parity

    row: dict[str, Any] = {**dataclasses.asdict(job.variant), "target": job.base.name, "error": None}
    try:
        profile = job.variant.profile(job.base)
        row.update(target=profile.name, state_bits=profile.state.bits, weight_bits=profile.weight.bits, decay_shift=profile.decay_shift)
        dep = with_timesteps(load_deployable(job.model_path, target=profile, trust=job.trust, preset=job.preset), job.timesteps)
        report = run_parity(
            dep.model, dep.graph, job.x, job.y, target=profile, batch_size=job.batch_size, backend=job.backend, progress=False
        )
    except QsnnError as exc:
        return {**row, "error": str(exc)}
    doc = report.to_json()
    return {
        **row,
        "float_accuracy": doc["float_accuracy"],
        "int_accuracy": doc["int_accuracy"],
        "accuracy_drop_pp": doc["accuracy_drop_pp"],
        "prediction_agreement": doc["prediction_agreement"],
        "identical_output_share": doc["identical_output_share"],
        "layer_spike_agreement": {layer["name"]: layer["spike_agreement"] for layer in doc["layers"]},
        "layer_saturations": {layer["name"]: layer["saturations"] for layer in doc["layers"]},
        "saturations": sum(layer["saturations"] for layer in doc["layers"]),
        "memory_bits": sum(layer["memory_bits"] for layer in doc["layers"]),
    }


def pareto_front(rows: Sequence[dict[str, Any]]) -> list[bool]:
    """For each row, whether it is on the (memory down, accuracy up, identical trains up) Pareto front."""

    def key(row: dict[str, Any]) -> tuple[float, float, float]:
        return (-row["memory_bits"], row["int_accuracy"], row["identical_output_share"])

    keys = [key(r) if r["error"] is None else None for r in rows]
    return [
        k is not None and not any(o is not None and o != k and all(a >= b for a, b in zip(o, k)) for o in keys)  # nobody dominates k
        for k in keys
    ]


def run_sweep(
    model_path: str | Path,
    base_target: str | TargetProfile,
    sweep_variants: Sequence[Variant],
    x: np.ndarray,
    y: np.ndarray,
    *,
    jobs: int = 1,
    progress: bool = True,
    **job_options: Any,
) -> list[dict[str, Any]]:
    """One row per variant (in the order given), with ``pareto`` marking the front.

    ``jobs`` > 1 runs variants in that many worker processes (spawned, so no torch threads are
    forked); each worker freezes and simulates one variant at a time. ``job_options`` go to
    :class:`SweepJob` (``trust``, ``preset``, ``timesteps``, ``batch_size``, ``backend``).
    """
    from tqdm import tqdm

    base = load_target(base_target)
    all_jobs = [SweepJob(Path(model_path), base, v, x, y, **job_options) for v in sweep_variants]
    bar = tqdm(total=len(all_jobs), desc="sweep", unit="variant", disable=not progress)
    rows: list[dict[str, Any] | None] = [None] * len(all_jobs)
    if jobs <= 1 or len(all_jobs) <= 1:
        for i, job in enumerate(all_jobs):
            rows[i] = run_variant(job)
            bar.update()
    else:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_variant, job): i for i, job in enumerate(all_jobs)}
            for future in as_completed(futures):
                rows[futures[future]] = future.result()
                bar.update()
    bar.close()
    done = [r for r in rows if r is not None]
    for row, on_front in zip(done, pareto_front(done)):
        row["pareto"] = on_front
    return done


def sweep_json(
    rows: Sequence[dict[str, Any]], *, model: str | Path, base_target: str, samples: int, requested: int | None
) -> dict[str, Any]:
    """The ``sweep --json`` document."""
    return {
        "model": str(model),
        "base_target": base_target,
        "samples": samples,
        "requested": requested,
        "variants": list(rows),
    }


def _short_name(row: dict[str, Any]) -> str:
    return row["target"].partition("/")[2] or row["target"]


def _label(names: list[str]) -> str:
    """One label for variants that plot on one point: ``s32/d20,24`` for ``s32/d20`` and ``s32/d24``."""
    heads = {n.rpartition("/")[0] for n in names}
    tails = [n.rpartition("/")[2] for n in names]
    if len(names) > 1 and len(heads) == 1 and len({t[0] for t in tails}) == 1:
        head = heads.pop()
        return (f"{head}/" if head else "") + tails[0][0] + ",".join(t[1:] for t in tails)
    return ", ".join(names)


def print_sweep(doc: dict[str, Any]) -> None:
    """The sweep as a table: one row per variant, the Pareto front starred, failed variants listed below it."""
    from rich.table import Table

    from qsnn_deploy.app.reports import _console, _fmt_bits, _fmt_int, samples_text

    table = Table(
        title=f"variants of {doc['base_target']} on {samples_text(doc)} (sN state bits, wN weight bits, dN decay shift; * Pareto front)"
    )
    columns = ("variant", "memory", "int acc", "drop pp", "pred agree", "identical trains", "spike agree % per layer", "saturations")
    for col in columns:
        table.add_column(col, justify="left" if col == "variant" else "right")
    failed = []
    for row in doc["variants"]:
        name = ("* " if row.get("pareto") else "  ") + _short_name(row)
        if row["error"] is not None:
            failed.append(f"{_short_name(row)}: {row['error']}")
            table.add_row(name, "failed", *[""] * (len(columns) - 2), style="red")
            continue
        table.add_row(
            name,
            _fmt_bits(row["memory_bits"]),
            f"{row['int_accuracy']:.2%}",
            f"{row['accuracy_drop_pp']:+.2f}",
            f"{row['prediction_agreement']:.2%}",
            f"{row['identical_output_share']:.2%}",
            " / ".join(f"{100 * v:.2f}" for v in row["layer_spike_agreement"].values()),
            _fmt_int(row["saturations"]),
        )
    console = _console()
    console.print(table)
    measured = [row for row in doc["variants"] if row["error"] is None]
    if measured:  # the float model and the data are the same for every variant
        layers = " / ".join(measured[0]["layer_spike_agreement"])
        console.print(f"float QAT accuracy {measured[0]['float_accuracy']:.2%}; spike agreement per LIF layer: {layers}")
    for line in failed:
        console.print(f"failed {line}", style="red", highlight=False)


def plot_sweep(doc: dict[str, Any], path: str | Path) -> Path:
    """PNG: integer accuracy and identical-output-train share against memory, the Pareto front marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qsnn_deploy.atomic import atomic_path

    rows = sorted((r for r in doc["variants"] if r["error"] is None), key=lambda r: r["memory_bits"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (("int_accuracy", "integer accuracy (%)"), ("identical_output_share", "identical output spike trains (%)"))
    for ax, (key, label) in zip(axes, panels):
        points: dict[tuple[float, float], list[str]] = {}  # variants with equal figures share one label
        for r in rows:
            points.setdefault((r["memory_bits"] / 8192, 100 * r[key]), []).append(_short_name(r))
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="0.55", s=18, zorder=2, label="variant")
        front = [r for r in rows if r.get("pareto")]
        ax.plot(
            [r["memory_bits"] / 8192 for r in front],
            [100 * r[key] for r in front],
            "o--",
            color="tab:red",
            lw=0.8,
            ms=8,
            mfc="none",
            zorder=3,
            label="Pareto front (memory, accuracy, identical trains)",
        )
        for (x, y), names in points.items():
            ax.annotate(_label(names), (x, y), fontsize=6, xytext=(3, 4), textcoords="offset points", rotation=35)
        ax.set(xlabel="memory (KiB: weights + state + parameters)", ylabel=label)
        ax.grid(alpha=0.3)
    if rows:  # the float model is the same for every variant
        axes[0].axhline(100 * rows[0]["float_accuracy"], color="tab:blue", lw=0.8, ls=":", label="float QAT model")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.22)
    fig.suptitle(f"{doc['base_target']} variants on {doc['samples']:,} samples of {Path(doc['model']).name}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
