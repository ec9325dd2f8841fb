"""Accuracy of a float model on a data split (the trainer's validation and test passes)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

EVAL_BATCH = 256


def _to_tensor(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))


def evaluate(model: Any, split: Any, batch_size: int = EVAL_BATCH, progress: bool = False, desc: str = "eval") -> float:
    """Accuracy of ``model`` (eval mode, fast forward) on a data ``Split``."""
    import torch
    from tqdm import tqdm

    from qsnn_deploy.data.loaders import iterate_batches
    from qsnn_deploy.training.model import predict

    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        batches = iterate_batches(split, batch_size, shuffle=False)
        total = math.ceil(len(split) / batch_size)
        for xb, yb in tqdm(batches, total=total, desc=desc, leave=False, disable=not progress):
            correct += int((predict(model(_to_tensor(xb))) == _to_tensor(yb)).sum())
    model.train(was_training)
    return correct / max(len(split), 1)


__all__ = ["EVAL_BATCH", "evaluate"]
