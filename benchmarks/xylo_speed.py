"""Our current-based simulator beside SynSense's XyloSim: time per sample, and agreement.

    python benchmarks/xylo_speed.py [MODEL.graph.json | --random] [--samples 100] [--batch-size 100]

MODEL is a current-based graph JSON (``export --format json`` of a Xylo model); without it, a
random int8 16-128-128-10 network. Inputs are Fashion-MNIST test images as row events (T = 28,
16 channels, 0..15 events; the packaged subset if the data set is not installed). Prints
seconds per sample of ``qsnn_deploy.sim.cuba_chain.run`` (batched NumPy) and of XyloSim
(xylosim 0.1.3 C++, one sample per ``evolve``), and whether every output spike agreed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _rows(count: int) -> np.ndarray:
    from qsnn_deploy.data.loaders import load_fmnist_test_or_subset

    split, _ = load_fmnist_test_or_subset(None, count)
    images = split.x.reshape(len(split.x), 28, 28).astype(np.float64)
    edges = np.linspace(0, 28, 17)
    cover = np.clip(np.minimum(edges[1:, None], np.arange(1, 29)) - np.maximum(edges[:-1, None], np.arange(28)), 0, None)
    return np.floor(images @ (cover / cover.sum(axis=1, keepdims=True)).T / 16).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=None)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from xylo_adapter import xylosim_class

    from qsnn_deploy.exporters.xylo_export import to_xylo_spec
    from qsnn_deploy.sim import cuba_chain

    if args.model is not None:
        from qsnn_deploy.exporters.json_graph import read_graph_json

        graph = read_graph_json(args.model)[0]
    else:
        from xylo_graphs import cuba_graph

        graph = cuba_graph([16, 128, 128, 10], np.random.default_rng(0), shifts=(3, 4, 4), dash_range=(1, 6), threshold_range=(500, 3000))
    x = _rows(args.samples)
    last = cuba_chain.cuba_layers(graph)[-1][0]
    start = time.perf_counter()
    batches = [cuba_chain.run(graph, x[i : i + args.batch_size], 28, record=True).spikes[last] for i in range(0, len(x), args.batch_size)]
    ours = np.concatenate(batches, axis=1)  # (T, N, n_out)
    t_ours = time.perf_counter() - start
    sim = xylosim_class("syns63300").from_specification(**to_xylo_spec(graph))
    start = time.perf_counter()
    theirs = []
    for sample in x:
        sim.reset_state()
        theirs.append(sim.evolve(sample)[0])
    t_xylo = time.perf_counter() - start
    same = np.array_equal(np.stack(theirs), ours.transpose(1, 0, 2))
    print(f"{'simulator':28s} {'s/sample':>10s}")
    print(f"{'qsnn-deploy cuba_chain':28s} {t_ours / len(x):10.5f}")
    print(f"{'XyloSim (xylosim 0.1.3)':28s} {t_xylo / len(x):10.5f}")
    print(f"{len(x)} samples x 28 steps, output spikes identical at every step: {same}")


if __name__ == "__main__":
    main()
