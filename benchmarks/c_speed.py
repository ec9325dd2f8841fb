"""Speed and memory of the C99 golden model (``--format c``) beside the simulator and snnTorch.

On the shipped Fashion-MNIST int4 model (examples/fmnist_int4/model.pt) at T=100, in one run
and on the same test images, it measures

(a) snnTorch: the float QAT model's per-step loop (``forward_reference`` under ``no_grad``),
    on the first ``--float-samples`` images (it is by far the slowest);
(b) the integer simulator, fast backend (torch + Numba, all CPU threads or ``--threads``),
    batches of 256;
(c) the C model: the export built with the Makefile's default flags (``-std=c99 -O2``) by
    ``$CC`` (default gcc), timed by its own testbench (``./testbench golden.bin --bench``:
    ``clock()`` and ``clock_gettime`` around each ``qsnn_run``, one thread),

and checks that the C model is bit-identical to the simulator on every image: ``make test``
compares every layer's spikes at every step and the output counts. The golden vectors come
from the fast backend (equal to the reference backend bit for bit, tests/sim/test_sim.py), which
keeps the benchmark to a minute or two. Memory: ``size`` of the compiled ``model.o`` (text
holds the code and the weight tables, bss the membranes, spikes and sums) beside the
simulator's memory figure (``qsnn-deploy simulate``: weights, membranes, thresholds and
biases at their bit widths). Run it as::

    python benchmarks/c_speed.py [--samples 300] [--float-samples 256] [--threads N] [--timesteps 100]
                                 [--model examples/fmnist_int4/model.pt] [--keep DIR]

Two rates per implementation: samples per second of wall-clock time, and samples per
CPU-second (process CPU time, summed over threads; the C testbench's ``clock()`` is CPU time).
It depends less on how many other processes share the machine (but torch's thread pool
spins when its threads wait, so on a crowded machine use ``--threads 1``: measured here at a
load average of 17 on 2 CPUs, snnTorch ran at 5.4 samples per CPU-second with 2 threads and
69 with 1). The load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn):
    """((wall seconds, CPU seconds), fn's result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - wall, time.process_time() - cpu), out


def _make(folder: Path, *args: str) -> str:
    cc = os.environ.get("CC", "gcc")
    done = subprocess.run(["make", "-s", "-C", str(folder), f"CC={cc}", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"make {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _c_memory(folder: Path) -> dict[str, int]:
    _make(folder, "model.o")
    lines = subprocess.run(["size", str(folder / "model.o")], capture_output=True, text=True, check=True).stdout.splitlines()
    text, data, bss = (int(v) for v in lines[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "examples" / "fmnist_int4" / "model.pt"))
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--timesteps", type=int, default=100)
    parser.add_argument("--float-samples", type=int, default=256, help="images for snnTorch (the first ones; it is the slow one)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and Numba threads of snnTorch and the fast backend (default: theirs, all CPUs); "
        "1 compares one thread with one thread, and keeps torch from collapsing on a crowded machine",
    )
    parser.add_argument("--keep", default=None, help="keep the exported C folder here")
    return parser.parse_args()


def _torch_rates(dep, x, steps: int, n_float: int) -> list[tuple[str, float, float]]:
    """(name, wall samples/s, samples per CPU-second) of snnTorch (first ``n_float`` images) and the fast backend."""
    import torch

    from qsnn_deploy.sim import simulate

    n, xf = len(x), x[:n_float]
    # warm-up: Numba compiles or loads its kernels, oneDNN creates its primitives
    simulate(dep.graph, x[:4], steps, backend="fast")
    model = dep.model.eval()
    with torch.no_grad():
        model.forward_reference(torch.from_numpy(x[:2]))
        t_float = _timed(lambda: [model.forward_reference(torch.from_numpy(xf[i : i + 256])) for i in range(0, len(xf), 256)])[0]
    t_fast = _timed(lambda: [simulate(dep.graph, x[i : i + 256], steps, backend="fast") for i in range(0, n, 256)])[0]
    return [
        (f"snnTorch float per-step loop ({len(xf)} images)", len(xf) / t_float[0], len(xf) / t_float[1]),
        ("integer simulator, fast backend (batches of 256)", n / t_fast[0], n / t_fast[1]),
    ]


def _golden_file(dep, x, steps: int) -> bytes:
    """golden.bin of every image, from the fast backend with rasters recorded, 100 images at a time."""
    import numpy as np

    from qsnn_deploy.exporters.c_export import golden_bytes
    from qsnn_deploy.sim import simulate

    counts, rasters = [], {name: [] for name, _ in dep.graph.lif_layers()}
    for start in range(0, len(x), 100):
        rec = simulate(dep.graph, x[start : start + 100], steps, backend="fast", record=True)
        counts.append(rec.counts)
        for name in rasters:
            rasters[name].append(rec.spikes[name])
    raster_list = [np.concatenate(parts, axis=1) for parts in rasters.values()]
    return golden_bytes(dep.graph, x, np.concatenate(counts), raster_list, steps)


def _c_model(dep, x, steps: int, keep: str | None) -> tuple[str, str, dict[str, int]]:
    """``make test`` and ``make bench`` output lines and ``size`` of model.o."""
    from qsnn_deploy.exporters import export

    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="c_speed.")) / "model_c"
    export(dep.graph, "c", folder, target=dep.target, timesteps=steps)
    (folder / "golden.bin").write_bytes(_golden_file(dep, x, steps))
    checked, bench = _make(folder, "test").strip(), _make(folder, "bench").strip()
    mem = _c_memory(folder)
    if not keep:
        shutil.rmtree(folder.parent, ignore_errors=True)
    return checked, bench, mem


def main() -> None:
    args = _args()
    from qsnn_deploy.app.perf import ALLOCATOR_ENV

    if not all(os.environ.get(k) == v for k, v in ALLOCATOR_ENV.items()):  # as benchmarks/sim_speed.py
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **ALLOCATOR_ENV})

    import numpy as np
    import torch

    from qsnn_deploy.app.loading import load_deployable, with_timesteps
    from qsnn_deploy.data.loaders import load_fmnist_test_or_subset
    from qsnn_deploy.sim import simulate

    if args.threads:
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    steps = args.timesteps
    dep = with_timesteps(load_deployable(args.model, target="int4-core"), steps)
    split, source = load_fmnist_test_or_subset(None, args.samples)
    x = split.x[: args.samples].astype(np.int64)
    print(f"model {args.model}, target {dep.target.name}, T={steps}, {len(x)} images of the {source}")
    print(f"CPUs {os.cpu_count()}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} (before)")

    rows = [(*row, str(torch.get_num_threads())) for row in _torch_rates(dep, x, steps, args.float_samples)]
    checked, bench, mem = _c_model(dep, x, steps, args.keep)
    cpu_rate, wall_rate = (float(part.split(" samples/s")[0].rsplit("= ", 1)[1]) for part in bench.split(", wall "))
    rows.append(("C model, gcc -O2 (qsnn_run per image)", wall_rate, cpu_rate, "1"))
    sim_bytes = sum(layer.memory_bits for layer in simulate(dep.graph, x[:1], steps).layers) / 8

    print(f"\nC model check: {checked}\nC model bench: {bench}\n")
    print(f"| {'implementation':50s} | {'samples / s':>11s} | {'per CPU-s':>10s} | threads |")
    print(f"|{'-' * 52}|{'-' * 13}|{'-' * 12}|---------|")
    for name, wall, cpu, used in rows:
        print(f"| {name:50s} | {wall:>11,.1f} | {cpu:>10,.1f} | {used:>7s} |")
    print(f"\n| {'memory':50s} | {'bytes':>11s} |\n|{'-' * 52}|{'-' * 13}|")
    print(f"| {'simulator figure (weights, state, params at bits)':50s} | {sim_bytes:>11,.0f} |")
    print(f"| {'C model.o text (code + const weights, thresholds)':50s} | {mem['text']:>11,d} |")
    print(f"| {'C model.o data':50s} | {mem['data']:>11,d} |")
    print(f"| {'C model.o bss (sums, membranes, spikes, counts)':50s} | {mem['bss']:>11,d} |")
    print(f"| {'C model.o total (size: dec)':50s} | {sum(mem.values()):>11,d} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} (after)")


if __name__ == "__main__":
    main()
