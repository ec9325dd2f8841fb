"""Plain-ONNX export vs the integer simulator on Fashion-MNIST: spikes identical at every step.

Exports the shipped model (or MODEL) to one-step ONNX, runs it in onnxruntime for T steps on
N test images, and compares every layer's spikes at every step with ``simulate``::

    python benchmarks/onnx_parity.py [MODEL] [--limit 1000] [--batch-size 100]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from qsnn_deploy.app.demo import SHIPPED_MODEL
    from qsnn_deploy.app.loading import load_deployable
    from qsnn_deploy.data.loaders import load_fmnist_test_or_subset
    from qsnn_deploy.exporters.onnx_plain import run_onnx, to_onnx
    from qsnn_deploy.sim import simulate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()

    dep = load_deployable(args.model, target="int4-core")
    split, source = load_fmnist_test_or_subset(limit=args.limit)
    proto = to_onnx(dep.graph)
    t0 = time.perf_counter()
    mismatched_samples = 0
    compared = 0
    for start in range(0, len(split), args.batch_size):
        xb = split.x[start : start + args.batch_size]
        counts, spikes = run_onnx(proto, xb, dep.timesteps)
        sim = simulate(dep.graph, xb, dep.timesteps, record=True, target=dep.target)
        bad = np.zeros(len(xb), dtype=bool)
        for name, s in sim.spikes.items():
            differ = (spikes[name].reshape(s.shape) != s).reshape(s.shape[0], s.shape[1], -1).any(axis=(0, 2))
            bad |= differ
            compared += s.size
        bad |= (counts != sim.counts).any(axis=1)
        mismatched_samples += int(bad.sum())
        print(f"  {start + len(xb):5d}/{len(split)} samples, mismatching so far: {mismatched_samples}", flush=True)
    print(
        f"{source}: {len(split)} images x {dep.timesteps} steps, {compared:,} neuron-steps compared; "
        f"samples with any spike differing between onnxruntime and the simulator: {mismatched_samples} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    if mismatched_samples:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
