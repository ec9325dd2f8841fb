"""Readable reports: rich tables on the terminal and JSON documents for machines.

The JSON documents are the data; the tables are rendered from them, so what a person reads
and what a script parses cannot disagree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from qsnn_deploy.atomic import write_text_atomic


def write_json(path: str | Path, doc: dict[str, Any]) -> Path:
    return write_text_atomic(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")


def _console():
    import sys

    from rich.console import Console

    # piped output (logs, CI) gets a fixed width wide enough for the tables, not rich's 80
    return Console() if sys.stdout.isatty() else Console(width=132)


def _fmt_int(v: int) -> str:
    return f"{int(v):,}"


def _fmt_bits(bits: int) -> str:
    b = bits / 8
    return f"{b / 1024:.1f} KiB" if b >= 1024 else f"{b:.0f} B"


def samples_text(doc: dict[str, Any]) -> str:
    """``"10,000 samples"``, or ``"10,000 of the 100,000 requested samples"`` when ``--limit`` asked for more than the split has."""
    requested = doc.get("requested")
    if requested is not None and requested > doc["samples"]:
        return f"{doc['samples']:,} of the {requested:,} requested samples"
    return f"{doc['samples']:,} samples"


def simulation_json(report: Any, dep: Any, requested: int | None = None) -> dict[str, Any]:
    """The ``simulate --json`` document from a ``SplitReport`` and its :class:`Deployable`.

    ``requested`` is the ``--limit`` asked for (None: the whole split); ``samples`` is what ran.
    """
    steps = dep.timesteps
    layers = []
    for st in report.layers:
        neuron_steps = st.neurons * report.samples * steps
        layers.append(
            {
                "name": st.name,
                "neurons": st.neurons,
                "spikes": int(st.spikes),
                "rate": st.spikes / neuron_steps if neuron_steps else 0.0,
                "synops": int(st.synops),
                "dense_macs": int(st.dense_macs),
                "memory_bits": int(st.memory_bits),
                "weight_bits": int(st.weight_bits),
                "state_bits": int(st.state_bits),
                "param_bits": int(st.param_bits),
                "saturations": int(st.saturations),
                "accumulator_overflows": int(st.accumulator_overflows),
            }
        )
    return {
        "target": dep.target.name,
        "model": str(dep.source),
        "timesteps": steps,
        "samples": int(report.samples),
        "requested": requested,
        "accuracy": float(report.accuracy),
        "layers": layers,
        "totals": {
            "spikes": sum(l["spikes"] for l in layers),
            "synops": sum(l["synops"] for l in layers),
            "dense_macs": sum(l["dense_macs"] for l in layers),
            "saturations": sum(l["saturations"] for l in layers),
            "memory_bytes": math.ceil(sum(l["memory_bits"] for l in layers) / 8),
            "synops_per_sample": sum(l["synops"] for l in layers) / max(report.samples, 1),
        },
    }


def print_simulation(doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{doc['target']}: {samples_text(doc)} x {doc['timesteps']} steps")
    for col in ("layer", "neurons", "spikes", "rate", "SynOps", "dense MACs", "memory", "saturations"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for l in doc["layers"]:
        table.add_row(
            l["name"],
            _fmt_int(l["neurons"]),
            _fmt_int(l["spikes"]),
            f"{l['rate']:.2%}",
            _fmt_int(l["synops"]),
            _fmt_int(l["dense_macs"]),
            _fmt_bits(l["memory_bits"]),
            _fmt_int(l["saturations"]),
        )
    t = doc["totals"]
    table.add_row(
        "total",
        "",
        _fmt_int(t["spikes"]),
        "",
        _fmt_int(t["synops"]),
        _fmt_int(t["dense_macs"]),
        f"{t['memory_bytes'] / 1024:.1f} KiB",
        _fmt_int(t["saturations"]),
        style="bold",
    )
    console = _console()
    console.print(table)
    console.print(f"accuracy {doc['accuracy']:.2%}   SynOps per sample {t['synops_per_sample']:,.0f}")


#: what "identical outputs" compares, per Output readout
_OUTPUTS = {"spike_count": "spike trains", "membrane": "scores"}


def print_parity(doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"parity on {doc['target']}: {samples_text(doc)} x {doc['timesteps']} steps")
    for col in ("layer", "neurons", "spikes (float)", "spikes (int)", "spike agreement", "saturations"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for l in doc["layers"]:
        table.add_row(
            l["name"],
            _fmt_int(l["neurons"]),
            _fmt_int(l["spikes_float"]),
            _fmt_int(l["spikes_int"]),
            f"{l['spike_agreement']:.4%}",
            _fmt_int(l["saturations"]),
        )
    console = _console()
    console.print(table)
    first = doc["first_divergence"]
    where = f"step {first['step']} in {first['layer']} ({first['samples_diverged']:,} samples diverge somewhere)" if first else "none"
    console.print(
        f"float accuracy {doc['float_accuracy']:.2%}   integer accuracy {doc['int_accuracy']:.2%}   "
        f"drop {doc['accuracy_drop_pp']:+.2f} pp\n"
        f"prediction agreement {doc['prediction_agreement']:.2%}   identical output {_OUTPUTS[doc.get('output_readout', 'spike_count')]} {doc['identical_output_share']:.2%}\n"
        f"first divergence: {where}"
    )
