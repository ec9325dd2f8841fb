"""Our current-based simulator beside SynSense's XyloSim: time per sample, agreement, accuracy.

    python benchmarks/xylo_speed.py [MODEL] [--target xylo-imu] [--samples 100] [--batch-size 100]

MODEL is a Xylo checkpoint (frozen here for ``--target``) or a current-based graph JSON;
without it, a random int8 16-128-128-10 network. Inputs: the ``fmnist-rows`` test split when
the data set is registered, else Fashion-MNIST test images as row events made here (T = 28,
16 area-weighted bins, 0..15 events). Prints, side by side, seconds per sample of
``qsnn_deploy.sim.cuba_chain.run`` (batched NumPy) and of XyloSim (xylosim 0.1.3 C++, one
sample per ``evolve``), the accuracy each gives, and whether every output spike agreed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _rows(count: int) -> tuple[np.ndarray, np.ndarray]:
    from qsnn_deploy.data.loaders import DATASET_NAMES, load_fmnist_test_or_subset, load_split

    if "fmnist-rows" in DATASET_NAMES:
        split = load_split("fmnist-rows", "test", timesteps=28, limit=count)
        return np.asarray(split.x, np.int64), np.asarray(split.y)
    split, _ = load_fmnist_test_or_subset(None, count)
    images = split.x.reshape(len(split.x), 28, 28).astype(np.float64)
    edges = np.linspace(0, 28, 17)
    cover = np.clip(np.minimum(edges[1:, None], np.arange(1, 29)) - np.maximum(edges[:-1, None], np.arange(28)), 0, None)
    return np.floor(images @ (cover / cover.sum(axis=1, keepdims=True)).T / 16).astype(np.int64), np.asarray(split.y)


def _graph(model: Path | None, target: str):
    if model is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from xylo_graphs import cuba_graph

        return cuba_graph([16, 128, 128, 10], np.random.default_rng(0), shifts=(3, 4, 4), dash_range=(1, 6), threshold_range=(500, 3000))
    from qsnn_deploy.app.loading import load_deployable

    return load_deployable(model, target=target).graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=None)
    parser.add_argument("--target", default="xylo-imu")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from tqdm import tqdm
    from xylo_adapter import xylosim_class

    from qsnn_deploy.exporters.xylo_export import to_xylo_spec
    from qsnn_deploy.sim import cuba_chain
    from qsnn_deploy.targets import load_target

    graph = _graph(args.model, args.target)
    x, y = _rows(args.samples)
    last = cuba_chain.cuba_layers(graph)[-1][0]
    start = time.perf_counter()
    batches = [cuba_chain.run(graph, x[i : i + args.batch_size], 28, record=True).spikes[last] for i in range(0, len(x), args.batch_size)]
    ours = np.concatenate(batches, axis=1).transpose(1, 0, 2)  # (N, T, n_out)
    t_ours = time.perf_counter() - start
    sim = xylosim_class(load_target(args.target).chip).from_specification(**to_xylo_spec(graph))
    start = time.perf_counter()
    theirs = []
    for sample in tqdm(x, desc="XyloSim", unit="sample"):
        sim.reset_state()
        theirs.append(sim.evolve(sample)[0])
    t_xylo = time.perf_counter() - start
    theirs_arr = np.stack(theirs)

    def accuracy(spikes: np.ndarray) -> float:
        return float((spikes.sum(axis=1).argmax(axis=1) == y).mean())

    print(f"{'simulator':28s} {'s/sample':>10s} {'accuracy':>9s}")
    print(f"{'qsnn-deploy cuba_chain':28s} {t_ours / len(x):10.5f} {accuracy(ours):9.2%}")
    print(f"{'XyloSim (xylosim 0.1.3)':28s} {t_xylo / len(x):10.5f} {accuracy(theirs_arr):9.2%}")
    print(f"{len(x)} samples x 28 steps, output spikes identical at every step: {np.array_equal(theirs_arr, ours)}")


if __name__ == "__main__":
    main()
