"""Resource and speed report of the qsnn core on an iCE40 UP5K, from the tools' own outputs.

Reads synth/yosys_stat.json (Yosys ``stat -json`` after ``synth_ice40``), synth/nextpnr.json
(nextpnr-ice40 ``--report``: utilisation and fmax), synth/nextpnr.log (why placement failed,
if it did), core.json (the core's layers) and rtl_stats.json (cycles and synapse reads per
sample, written by the cocotb testbench). Writes synth/report.json and prints a table.
Exit status 0 even when the design does not fit: the report says what is short.
"""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYNTH = HERE / "synth"
UP5K = {"LUTs": 5280, "FFs": 5280, "EBR": 30, "SPRAM": 4, "DSPs": 8}
CELLS = {
    "LUTs": ("SB_LUT4",),
    "EBR": ("SB_RAM40_4K",),
    "SPRAM": ("SB_SPRAM256KA",),
    "DSPs": ("SB_MAC16",),
}


def read_json(path):
    return json.loads(path.read_text()) if path.is_file() else None


def yosys_cells():
    stat = read_json(SYNTH / "yosys_stat.json")
    if stat is None:
        return None
    design = stat.get("design") or next(iter(stat["modules"].values()))
    cells = design.get("num_cells_by_type", {})
    used = {key: sum(cells.get(c, 0) for c in names) for key, names in CELLS.items()}
    used["FFs"] = sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    return used


def nextpnr_result():
    report = read_json(SYNTH / "nextpnr.json")
    log = (SYNTH / "nextpnr.log").read_text() if (SYNTH / "nextpnr.log").is_file() else ""
    errors = [line.strip() for line in log.splitlines() if line.startswith("ERROR")]
    if report is None:
        return {"placed": False, "errors": errors or ["nextpnr did not run"]}
    util = report.get("utilization", {})
    # the design clock (nextpnr also lists pseudo-clocks such as $PACKER_GND_NET)
    fmax = min((c.get("achieved", 0.0) for name, c in report.get("fmax", {}).items() if "clk" in name), default=None)
    used = {
        "LUTs": util.get("ICESTORM_LC", {}).get("used"),
        "EBR": util.get("ICESTORM_RAM", {}).get("used"),
        "SPRAM": util.get("ICESTORM_SPRAM", {}).get("used"),
        "DSPs": util.get("ICESTORM_DSP", {}).get("used"),
    }
    return {"placed": not errors and (SYNTH / "qsnn_core.asc").is_file(), "errors": errors, "fmax_mhz": fmax, "used": used}


def shortfall(used):
    """The resources the design needs beyond the UP5K's, e.g. {'EBR': (40, 30)}."""
    return {k: (used[k], UP5K[k]) for k in UP5K if used.get(k) is not None and used[k] > UP5K[k]}


def main():
    core = read_json(HERE / "core.json")
    rtl = read_json(HERE / "rtl_stats.json")
    cells = yosys_cells()
    pnr = nextpnr_result()
    cycles = taps = None
    if rtl and rtl["samples"]:
        cycles = sum(s["cycles"] for s in rtl["samples"]) / len(rtl["samples"])
        taps = sum(s["taps"] for s in rtl["samples"]) / len(rtl["samples"])
    fmax = pnr.get("fmax_mhz")
    report = {
        "device": "iCE40UP5K",
        "available": UP5K,
        "yosys_cells": cells,
        "nextpnr": pnr,
        "short": {k: {"needed": n, "available": a} for k, (n, a) in shortfall(cells or {}).items()},
        "timesteps": core["timesteps"],
        "rtl_samples": len(rtl["samples"]) if rtl else 0,
        "cycles_per_image": cycles,
        "images_per_s": (fmax * 1e6 / cycles) if (fmax and cycles and pnr["placed"]) else None,
        # one weight read and one accumulator read per synapse, plus the scan and LIF reads
        "synapse_reads_per_image": taps,
        "memory_reads_per_image": _memory_reads(core, rtl, taps),
    }
    SYNTH.mkdir(exist_ok=True)
    (SYNTH / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print_table(report)


def _memory_reads(core, rtl, taps):
    """2 per synapse (weight ROM, accumulator) + 1 per scanned source value + 5 per LIF update."""
    if taps is None:
        return None
    steps = core["timesteps"]
    per_step = sum(layer["source_neurons"] for layer in core["layers"] if not layer["static_source"])
    static = sum(layer["source_neurons"] for layer in core["layers"] if layer["static_source"])
    lif = 5 * sum(layer["neurons"] for layer in core["layers"])
    return 2 * taps + static + steps * (per_step + lif)


def print_table(report):
    rows = []
    cells = report["yosys_cells"] or {}
    used = report["nextpnr"].get("used") or {}
    for key in ("LUTs", "FFs", "EBR", "SPRAM", "DSPs"):
        value = used.get(key) if used.get(key) is not None else cells.get(key)
        rows.append((key, f"{value} / {UP5K[key]}" if value is not None else "-"))
    fmax = report["nextpnr"].get("fmax_mhz")
    rows.append(("fmax (nextpnr)", f"{fmax:.1f} MHz" if fmax else "not placed"))
    rows.append(
        (
            f"cycles / image (RTL, T={report['timesteps']})",
            f"{report['cycles_per_image']:,.0f}" if report["cycles_per_image"] else "run make test first",
        )
    )
    rows.append(("images / s", f"{report['images_per_s']:,.1f}" if report["images_per_s"] else "-"))
    rows.append(("memory reads / image", f"{report['memory_reads_per_image']:,.0f}" if report["memory_reads_per_image"] else "-"))
    for key, need in report["short"].items():
        rows.append((f"short: {key}", f"needs {need['needed']}, UP5K has {need['available']}"))
    for err in report["nextpnr"].get("errors", [])[:3]:
        rows.append(("nextpnr", re.sub(r"\s+", " ", err)[:90]))
    width = max(len(k) for k, _ in rows)
    print(f"{'iCE40 UP5K report':<{width}}  value")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
