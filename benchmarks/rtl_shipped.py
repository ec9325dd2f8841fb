"""The shipped model in RTL simulation: bit-exactness and cycles per image (docs/results.md).

    python benchmarks/rtl_shipped.py [MODEL] [--images 20] [--timesteps 100] [--out DIR] [--synth]

Exports MODEL (default examples/fmnist_int4/model.pt, frozen for int4-core) with
``--format verilog`` and the first N Fashion-MNIST test images as golden vectors, runs the
cocotb testbench on Verilator (every layer's spike raster at every step and the output
counts compared with the simulator's), and prints, side by side, the RTL's cycles per image
(its own counter), synapse reads, the wall time of the RTL simulation and of the bit-accurate
simulator on the same images. ``--synth`` also runs ``make synth`` (Yosys + nextpnr, UP5K).
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


def main() -> None:
    from qsnn_deploy.app.loading import load_deployable
    from qsnn_deploy.data.loaders import load_fmnist_test_or_subset
    from qsnn_deploy.exporters import export
    from qsnn_deploy.sim import simulate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=ROOT / "examples" / "fmnist_int4" / "model.pt")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--timesteps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("/tmp/qsnn_rtl_shipped"))
    parser.add_argument("--synth", action="store_true")
    args = parser.parse_args()

    dep = load_deployable(args.model, target="int4-core")
    x = load_fmnist_test_or_subset(None, args.images)[0].x.astype("int64")
    start = time.perf_counter()
    simulate(dep.graph, x, args.timesteps, record=True)
    sim_s = time.perf_counter() - start
    export(dep.graph, "verilog", args.out, timesteps=args.timesteps, golden=x)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.perf_counter()
    run = subprocess.run(["make", "-C", str(args.out), "test"], env=env, capture_output=True, text=True)
    rtl_s = time.perf_counter() - start
    identical = run.returncode == 0
    if not identical:
        print(run.stdout[-4000:], run.stderr[-2000:])
    stats = json.loads((args.out / "rtl_stats.json").read_text()) if identical else {"samples": []}
    cycles = [s["cycles"] for s in stats["samples"]]
    taps = [s["taps"] for s in stats["samples"]]
    rows = [
        ("model", str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model)),
        ("T, images", f"{args.timesteps}, {args.images}"),
        ("RTL bit-identical (counts + every layer-step raster)", "yes" if identical else "NO"),
        ("samples compared", str(len(cycles))),
        ("cycles / image (RTL counter), mean", f"{sum(cycles) / len(cycles):,.0f}" if cycles else "-"),
        ("cycles / image, min..max", f"{min(cycles):,}..{max(cycles):,}" if cycles else "-"),
        ("synapse reads / image, mean", f"{sum(taps) / len(taps):,.0f}" if taps else "-"),
        ("wall time: Verilator build + cocotb run", f"{rtl_s:.1f} s"),
        ("wall time: bit-accurate simulator (same images)", f"{sim_s:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.synth:
        synth = subprocess.run(["make", "-C", str(args.out), "synth"], env=env, capture_output=True, text=True)
        print(synth.stdout[-2500:])
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
