"""Test accuracy of the shipped Xylo model three ways: QAT float model, our simulator, SynSense's XyloSim.

    python examples/fmnist_rows_xylo/xylo_accuracy.py [MODEL] [--limit N] [--spec spec.npz]

MODEL (default: model.pt beside this script) is frozen for ``xylo-imu`` and exported with
``qsnn-deploy export MODEL --format xylo --target xylo-imu -o spec.npz`` (the NPZ is written to
``--spec``, a temporary file by default); XyloSim (rockpool 3.1 / xylosim 0.1.3) is built from
that file alone with ``XyloSim.from_specification(**kwargs)``, and runs every test sample of
``fmnist-rows`` (all 10,000 unless ``--limit``). Prints the three accuracies (class = most
output spikes over the 28 steps, ties to the lowest index) and whether XyloSim's output spikes
equal our simulator's at every step. rockpool is imported through tests/xylo_adapter.py (a
stand-in for its samna-only Xylo Audio 3 package; samna is never imported).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=HERE / "model.pt")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--spec", type=Path, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from xylo_adapter import xylosim_class

    import qsnn_deploy

    spec = args.spec or Path(tempfile.mkdtemp()) / "spec.npz"
    export = [sys.executable, "-m", "qsnn_deploy.app.cli", "export", str(args.model), "--format", "xylo", "--target", "xylo-imu"]
    subprocess.run([*export, "-o", str(spec), "--force"], check=True)
    model = qsnn_deploy.load_model(args.model)
    graph = qsnn_deploy.freeze(model, "xylo-imu")
    x, y = qsnn_deploy.load_test_images("fmnist-rows", limit=args.limit)
    x = x.astype(np.int64)
    with torch.no_grad():
        float_pred = np.concatenate([model(torch.from_numpy(x[i : i + 500])).sum(0).argmax(-1).numpy() for i in range(0, len(x), 500)])
    ours = np.concatenate(
        [qsnn_deploy.simulate(graph, x[i : i + 500], 28, record=True).spikes["lif2"] for i in range(0, len(x), 500)], axis=1
    )
    chip, kwargs, _ = qsnn_deploy.load_xylo_spec(spec)
    sim = xylosim_class(chip).from_specification(**kwargs)
    theirs = []
    for sample in tqdm(x, desc="XyloSim"):
        sim.reset_state()
        theirs.append(sim.evolve(sample)[0])
    theirs = np.stack(theirs)  # (N, T, n_out)
    rows = [
        ("QAT float model (snnTorch + Brevitas)", float_pred),
        ("qsnn-deploy simulator, xylo-imu", ours.sum(0).argmax(-1)),
        (f"XyloSim {chip} (xylosim 0.1.3)", theirs.sum(1).argmax(-1)),
    ]
    print(f"{len(x)} Fashion-MNIST test images as row events (T = 28, 16 channels)")
    print(f"{'model':42s} {'accuracy':>9s}")
    for name, pred in rows:
        print(f"{name:42s} {100 * (pred == y).mean():8.2f}%")
    print(f"XyloSim output spikes identical to ours at every step: {np.array_equal(theirs, ours.transpose(1, 0, 2))}")


if __name__ == "__main__":
    main()
