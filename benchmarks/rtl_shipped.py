"""The shipped model in RTL simulation: bit-exactness and cycles per image (docs/results.md).

    python benchmarks/rtl_shipped.py [MODEL] [--images 20] [--timesteps 100] [--out DIR]
                                     [--cocotb N] [--synth]

Exports MODEL (default examples/fmnist_int4/model.pt, frozen for int4-core) with
``--format verilog`` and the first N Fashion-MNIST test images as golden vectors, builds the
core with Verilator and a plain C++ harness (benchmarks/rtl/verilator_harness.cpp: the cocotb
testbench runs the same core at about 0.3 M cycles/s, too slow for 20 images x 100 steps x
~50 M cycles), and compares every layer's spike raster at every step and the output counts
with the simulator's. It prints, side by side, the RTL's cycles per image (the core's own
counter) beside the docs/fpga.md formula, synapse reads, and the wall times of the RTL
simulation and of the bit-accurate simulator on the same images. ``--cocotb N`` also runs the
generated cocotb testbench (``make test``) on the first N images; ``--synth`` runs
``make synth`` (Yosys + nextpnr, UP5K) and prints its table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "benchmarks" / "rtl" / "verilator_harness.cpp"


def build_harness(folder: Path) -> Path:
    """Verilator build of qsnn_core with the C++ harness; returns the executable."""
    build = folder / "bench_build"
    cmd = ["verilator", "--cc", "--exe", "--build", "-O3", "-Wno-fatal", "-Wno-WIDTH", "--top-module", "qsnn_core", "-Mdir", str(build)]
    cmd += ["-MAKEFLAGS", "OPT_FAST=-O2", "qsnn_layer.v", "qsnn_core.v", str(HARNESS), "-o", "Vharness"]
    subprocess.run(cmd, cwd=folder, check=True, capture_output=True, text=True)
    return build / "Vharness"


def run_harness(folder: Path, exe: Path, golden: dict, core: dict) -> tuple[list[dict], list[str]]:
    """Per sample (cycles, taps); and every difference from golden.json (empty: bit-identical)."""
    from tqdm import tqdm

    samples = golden["samples"]
    (folder / "bench_inputs.txt").write_text("".join(" ".join(map(str, s["input"])) + "\n" for s in samples))
    names = [layer["name"] for layer in core["layers"]]
    proc = subprocess.Popen(
        [str(exe), "bench_inputs.txt", str(len(samples[0]["input"])), str(core["outputs"])], cwd=folder, stdout=subprocess.PIPE, text=True
    )
    stats, problems, index, steps = [], [], -1, []
    with tqdm(total=len(samples), desc="RTL (Verilator)", unit="image") as bar:
        for line in proc.stdout:
            tag, *rest = line.split()
            if tag == "S":
                index, steps = index + 1, [0] * len(names)
            elif tag == "L":
                layer, got = int(rest[0]), [int(v) for v in rest[1:]]
                want = samples[index]["rasters"][names[layer]][steps[layer]]
                if got != want:
                    problems.append(f"sample {index} layer {names[layer]} step {steps[layer]}: {len(got)} vs {len(want)} spikes")
                steps[layer] += 1
            elif tag == "C" and [int(v) for v in rest] != samples[index]["counts"]:
                problems.append(f"sample {index}: output counts {rest} vs {samples[index]['counts']}")
            elif tag == "Y":
                stats.append({"cycles": int(rest[0]), "taps": int(rest[1])})
                if steps != [core["timesteps"]] * len(names):
                    problems.append(f"sample {index}: layer-steps seen {steps}")
                bar.update()
    proc.wait()
    if len(stats) != len(samples):
        problems.append(f"harness finished {len(stats)} of {len(samples)} samples (exit {proc.returncode})")
    return stats, problems


def mean(values: list[int]) -> str:
    return f"{sum(values) / len(values):,.0f}" if values else "-"


def print_table(args, golden: dict, core: dict, stats: list[dict], problems: list[str], seconds: tuple[float, float, float]) -> None:
    """The side-by-side figures: bit-exactness, RTL cycles beside the formula, wall times."""
    from test_export_verilog import cycles_formula

    sim_s, build_s, rtl_s = seconds
    cycles = [s["cycles"] for s in stats]
    formula = [cycles_formula(core, s) for s in golden["samples"][: len(stats)]]
    taps = [s["taps"] for s in stats]
    rows = [
        ("model", str(args.model)),
        ("T, images", f"{args.timesteps}, {args.images}"),
        ("RTL bit-identical (counts + every layer-step raster)", "yes" if not problems else f"NO ({len(problems)} differences)"),
        ("samples compared", str(len(stats))),
        ("cycles / image: RTL counter, mean", mean(cycles)),
        ("cycles / image: docs/fpga.md formula, mean", mean(formula) + (" (equal per image)" if formula == cycles else " (DIFFERS)")),
        ("cycles / image, min..max", f"{min(cycles):,}..{max(cycles):,}" if cycles else "-"),
        ("synapse reads / image, mean", mean(taps)),
        ("Verilator build", f"{build_s:.1f} s"),
        ("RTL simulation (all images)", f"{rtl_s:.1f} s = {sum(cycles) / rtl_s / 1e6:.2f} M cycles/s" if cycles else f"{rtl_s:.1f} s"),
        ("bit-accurate simulator (same images, record=True)", f"{sim_s:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    for line in problems[:10]:
        print("difference:", line)


def main() -> None:
    # the cycle formula lives in tests/exporters/test_export_verilog.py
    sys.path[:0] = [str(ROOT / "tests" / "exporters"), str(ROOT / "tests")]
    from qsnn_deploy.app.loading import load_deployable
    from qsnn_deploy.data.loaders import load_fmnist_test_or_subset
    from qsnn_deploy.exporters import export
    from qsnn_deploy.sim import simulate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=ROOT / "examples" / "fmnist_int4" / "model.pt")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--timesteps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("/tmp/qsnn_rtl_shipped"))
    parser.add_argument("--cocotb", type=int, default=0, metavar="N")
    parser.add_argument("--synth", action="store_true")
    args = parser.parse_args()

    dep = load_deployable(args.model, target="int4-core")
    x = load_fmnist_test_or_subset(None, args.images)[0].x.astype("int64")
    start = time.perf_counter()
    simulate(dep.graph, x, args.timesteps, record=True)
    sim_s = time.perf_counter() - start
    export(dep.graph, "verilog", args.out, timesteps=args.timesteps, golden=x)
    golden = json.loads((args.out / "golden.json").read_text())
    core = json.loads((args.out / "core.json").read_text())
    start = time.perf_counter()
    exe = build_harness(args.out)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    stats, problems = run_harness(args.out, exe, golden, core)
    rtl_s = time.perf_counter() - start
    print_table(args, golden, core, stats, problems, (sim_s, build_s, rtl_s))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "QSNN_SAMPLES": str(args.cocotb)}
    if args.cocotb:
        start = time.perf_counter()
        run = subprocess.run(["make", "-C", str(args.out), "test"], env=env, capture_output=True, text=True)
        print(
            f"cocotb testbench on Verilator, first {args.cocotb} images: {'pass' if run.returncode == 0 else 'FAIL'} ({time.perf_counter() - start:.0f} s)"
        )
    if args.synth:
        (args.out / "rtl_stats.json").write_text(
            json.dumps({"samples": stats, "timesteps": args.timesteps, "rasters_compared": True}) + "\n"
        )
        synth = subprocess.run(["make", "-C", str(args.out), "synth"], env=env, capture_output=True, text=True)
        print(synth.stdout[synth.stdout.find("iCE40 UP5K report") :])
    sys.exit(0 if not problems else 1)


if __name__ == "__main__":
    main()
