"""PNG plots of a training run (the paper's Figs. 2-3: loss and learning rate per iteration)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qsnn_deploy.atomic import atomic_path


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_run(out_dir: Path, iter_loss: Sequence[float], iter_lr: Sequence[float], history: Sequence[dict[str, Any]]) -> list[Path]:
    """Write loss.png, lr.png and accuracy.png into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    loss = np.asarray(iter_loss, dtype=float)
    ax.plot(loss, lw=0.5, alpha=0.4, label="per iteration")
    if len(loss) >= 20:
        k = max(len(loss) // 50, 10)
        ax.plot(np.arange(k - 1, len(loss)), np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.5, label=f"moving average ({k})")
    ax.set(xlabel="iteration", ylabel="spike-count MSE loss", title="Training loss")
    ax.legend()
    _save(fig, out_dir / "loss.png")
    paths.append(out_dir / "loss.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.asarray(iter_lr, dtype=float), lw=1)
    ax.set(xlabel="iteration", ylabel="learning rate", title="Learning-rate schedule")
    _save(fig, out_dir / "lr.png")
    paths.append(out_dir / "lr.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    for key in ("train_acc", "val_acc", "test_acc"):
        # None: not measured (a fine-tuning run's epoch 0 has no training accuracy)
        ax.plot(epochs, [np.nan if h[key] is None else 100 * h[key] for h in history], marker="o", ms=3, label=key.replace("_acc", ""))
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    ax.legend()
    _save(fig, out_dir / "accuracy.png")
    paths.append(out_dir / "accuracy.png")
    plt.close(fig)
    return paths
