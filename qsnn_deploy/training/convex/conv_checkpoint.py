"""A conv QSNN with a convexly refit readout (``sg-cvx`` on a conv checkpoint) and its checkpoint file.

The file holds the base QAT checkpoint's payload unchanged (``base``: its ``model_config``,
``state_dict`` tensors, ``train_config``...) and the integer readout as plain lists, so it loads
with ``torch.load(weights_only=True)``. Its own ``format`` keeps readers of plain QAT
checkpoints from deploying the base model's spiking ``fc`` in its place.

Frozen (:func:`freeze_conv_readout`): the base model's graph for the target, cut after the
feature LIF, then the summing membrane readout of :mod:`qsnn_deploy.passes.readout`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qsnn_deploy.atomic import atomic_path
from qsnn_deploy.errors import CheckpointError, TargetError
from qsnn_deploy.training.checkpoint import Checkpoint, checkpoint_from_payload

FORMAT = "qsnn-deploy-conv-readout"
VERSION = 1


@dataclass
class ConvReadoutModel:
    """The base conv checkpoint, the LIF whose spike counts are the features, and the integer readout."""

    base: Checkpoint
    feature_layer: str  # e.g. "lif2"
    weight: np.ndarray  # (C, P) int64, P = the feature LIF's neurons (C-order flattening)
    bias: np.ndarray  # (C,) int64, added at every step
    input_shift: int
    target: str  # the target the features were simulated for (the refit is exact only there)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def timesteps(self) -> int:
        return self.base.model_config.timesteps

    @property
    def dataset(self) -> str | None:
        return self.base.train_config.dataset if self.base.train_config else None


def _payload(path: str | Path) -> dict[str, Any]:
    import torch

    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"{path}: cannot read the checkpoint: {exc}"[:300]) from None
    return obj if isinstance(obj, dict) else {}


def is_conv_readout_checkpoint(path: str | Path) -> bool:
    """True if ``path`` was written by :func:`save_conv_readout` (read safely)."""
    try:
        return _payload(path).get("format") == FORMAT
    except CheckpointError:
        return False


def save_conv_readout(model: ConvReadoutModel, path: str | Path) -> Path:
    import torch

    payload = {
        "format": FORMAT,
        "version": VERSION,
        "base": model.base.to_payload() | {"train_state": None},
        "feature_layer": model.feature_layer,
        "readout_weight": model.weight.tolist(),
        "readout_bias": model.bias.tolist(),
        "input_shift": int(model.input_shift),
        "target": model.target,
        "method": "sg-cvx",
        "metrics": model.metrics,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_conv_readout(path: str | Path) -> ConvReadoutModel:
    obj = _payload(path)
    if obj.get("format") != FORMAT or obj.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint of version {VERSION}")
    try:
        return ConvReadoutModel(
            base=checkpoint_from_payload(obj["base"], f"{path} (base)"),
            feature_layer=str(obj["feature_layer"]),
            weight=np.asarray(obj["readout_weight"], np.int64),
            bias=np.asarray(obj["readout_bias"], np.int64),
            input_shift=int(obj["input_shift"]),
            target=str(obj["target"]),
            metrics=dict(obj.get("metrics") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed {FORMAT} checkpoint: {exc}"[:300]) from None


def freeze_conv_readout(model: ConvReadoutModel, target: Any = None) -> Any:
    """The deployed graph: the base model frozen for ``target`` (default: the refit's), cut, then the membrane readout.

    Raises:
        TargetError: ``target`` is not the one the readout was refit for (its features would differ), or the
            readout does not fit it (weights, score bound).
    """
    from qsnn_deploy.frontends.torch_qat import freeze
    from qsnn_deploy.passes.readout import membrane_readout
    from qsnn_deploy.targets import load_target
    from qsnn_deploy.training.checkpoint import build_model

    tgt = load_target(target if target is not None else model.target)
    if tgt.name != model.target:
        raise TargetError(f"the readout was refit on {model.target}'s integer features; freeze it for {model.target}, not {tgt.name}")
    graph = freeze(build_model(model.base), tgt)
    out = membrane_readout(graph, model.feature_layer, model.weight, model.bias, model.input_shift, model.timesteps)
    meta = dict(out.metadata)
    meta.update(producer="qsnn-deploy freeze (conv QSNN, sg-cvx readout)", method="sg-cvx")
    return dataclasses.replace(out, metadata=meta)


__all__ = ["FORMAT", "ConvReadoutModel", "freeze_conv_readout", "is_conv_readout_checkpoint", "load_conv_readout", "save_conv_readout"]
