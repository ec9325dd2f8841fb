"""A trained witness-stack network and its checkpoint file (``best.pt`` of a convex run).

The file holds plain data only (ints, lists, strings), so it loads with
``torch.load(weights_only=True)``; ``format`` tells it apart from the QAT checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qsnn_deploy.atomic import atomic_path
from qsnn_deploy.errors import CheckpointError
from qsnn_deploy.training.convex.model import StackConfig, StackWeights

FORMAT = "qsnn-deploy-convex"
VERSION = 1


@dataclass
class StackModel:
    """Integer hidden stacks + integer readout: exactly what :func:`~qsnn_deploy.frontends.convex_stack.freeze_stack` deploys."""

    config: StackConfig
    hidden: StackWeights
    readout_weight: np.ndarray  # (C, K * m_L) int64
    readout_bias: np.ndarray  # (C,) int64
    dataset: str | None = None
    method: str = "cvx"
    metrics: dict[str, Any] = field(default_factory=dict)

    def scores(self, x: Any) -> np.ndarray:
        """Integer class scores on frames ``x``: features @ W.T + b."""
        from qsnn_deploy.training.convex.model import integer_features

        return integer_features(self.config, self.hidden, x) @ self.readout_weight.T + self.config.bias_steps * self.readout_bias

    def predict(self, x: Any) -> np.ndarray:
        return np.argmax(self.scores(x), axis=1)  # lowest index on ties, as the simulator


def is_convex_checkpoint(path: str | Path) -> bool:
    """True if ``path`` is a checkpoint written by :func:`save_stack` (reads it safely)."""
    try:
        return read_payload(path).get("format") == FORMAT
    except CheckpointError:
        return False


def read_payload(path: str | Path, fmt: str | None = None, version: int | None = None) -> dict[str, Any]:
    """A plain-data checkpoint (``torch.load(weights_only=True)``) as a dict ({} if it is not one).

    With ``fmt``, a file whose ``format`` and ``version`` are not ``fmt`` and ``version`` is a CheckpointError.
    """
    import torch

    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"{path}: cannot read the checkpoint: {exc}"[:300]) from None
    obj = obj if isinstance(obj, dict) else {}
    if fmt is not None and (obj.get("format") != fmt or obj.get("version") != version):
        raise CheckpointError(f"{path}: not a {fmt} checkpoint of version {version}")
    return obj


def write_payload(payload: dict[str, Any], path: str | Path) -> Path:
    """Save a plain-data checkpoint atomically (``torch.save`` to a temporary file, then rename)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def save_stack(model: StackModel, path: str | Path) -> Path:

    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "hidden": model.hidden.to_dict(),
        "readout_weight": model.readout_weight.tolist(),
        "readout_bias": model.readout_bias.tolist(),
        "dataset": model.dataset,
        "method": model.method,
        "metrics": model.metrics,
    }
    return write_payload(payload, path)


def load_stack(path: str | Path) -> StackModel:
    obj = read_payload(path, FORMAT, VERSION)
    try:
        return StackModel(
            config=StackConfig.from_dict(obj["config"]),
            hidden=StackWeights.from_dict(obj["hidden"]),
            readout_weight=np.asarray(obj["readout_weight"], np.int64),
            readout_bias=np.asarray(obj["readout_bias"], np.int64),
            dataset=obj.get("dataset"),
            method=obj.get("method", "cvx"),
            metrics=dict(obj.get("metrics") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed {FORMAT} checkpoint: {exc}"[:300]) from None


__all__ = ["FORMAT", "StackModel", "is_convex_checkpoint", "load_stack", "save_stack"]
