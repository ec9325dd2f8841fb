"""Plot the four LR schedules of the trainer (the paper's Fig. 2) to docs/lr_schedules.png.

    python benchmarks/plot_schedules.py [--epochs 60] [--iters-per-epoch 422]

LossStep is drawn with a halving after every 4th epoch as an illustration (in training it
halves whenever an epoch's loss does not improve).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qsnn_deploy.atomic import atomic_path
    from qsnn_deploy.training.config import get_preset, override
    from qsnn_deploy.training.schedules import learning_rate

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--iters-per-epoch", type=int, default=422)
    parser.add_argument("--out", type=Path, default=Path("docs/lr_schedules.png"))
    args = parser.parse_args()
    base = get_preset("fmnist-int4").train
    ipe = args.iters_per_epoch
    its = range(0, args.epochs * ipe, max(ipe // 20, 1))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for schedule in ("none", "step", "loss-step", "cosine"):
        cfg = override(base, schedule=schedule)
        ax.plot([i / ipe for i in its], [learning_rate(cfg, i, ipe, loss_halvings=i // (4 * ipe)) for i in its], label=schedule)
    ax.set(xlabel="epoch", ylabel="learning rate", title="LR schedules (fmnist-int4 base LR, stepped per minibatch)")
    ax.legend()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
