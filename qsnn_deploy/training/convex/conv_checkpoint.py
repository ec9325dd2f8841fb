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

from qsnn_deploy.errors import CheckpointError, TargetError
from qsnn_deploy.training.checkpoint import Checkpoint, checkpoint_from_payload
from qsnn_deploy.training.convex.checkpoint import read_payload, write_payload

FORMAT = "qsnn-deploy-conv-readout"
VERSION = 1


def summed_scores(counts: np.ndarray, weight: np.ndarray, bias: np.ndarray, input_shift: int, timesteps: int) -> np.ndarray:
    """The summing readout's membrane after T steps, 2^F W c + T B, for (N, P) spike counts c (the simulator's Output)."""
    return (np.asarray(counts).astype(np.int64) @ weight.T << input_shift) + timesteps * bias


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


class FloatConvReadout:
    r"""The float counterpart of a refit model, for ``parity``: the base QAT model's float conv layers,
    then the integer readout applied to their spike counts.

    With c the float model's spike counts of ``feature_layer`` over T steps (C-order flattened), the
    scores are ``(W c << input_shift) + T B``, the membrane V[T-1] the deployed readout computes from
    the integer graph's counts. Both are integers, so the two outputs compare exactly; any
    difference comes from the conv layers' spikes. ``__call__`` returns the base model's
    :class:`~qsnn_deploy.training.model.ForwardRecord` with the never-firing readout's (all-zero)
    spikes in place of the base readout's, so its layers line up with the deployed graph's.
    """

    def __init__(self, model: ConvReadoutModel, timesteps: int | None = None) -> None:
        import dataclasses

        from qsnn_deploy.training.checkpoint import build_model

        self.readout = model
        self.base = build_model(model.base)
        if timesteps is not None:
            self.base.config = dataclasses.replace(self.base.config, timesteps=int(timesteps))
        self.feature_index = int(model.feature_layer.removeprefix("lif")) - 1

    @property
    def config(self) -> Any:
        return self.base.config

    def eval(self) -> FloatConvReadout:
        self.base.eval()
        return self

    def scores(self, record: Any) -> np.ndarray:
        """(B, classes) int64 readout membranes from the recorded feature spikes."""
        counts = record.spikes[self.feature_index].sum(0).flatten(1).numpy()
        r = self.readout
        return summed_scores(counts, r.weight, r.bias, r.input_shift, self.config.timesteps)

    def __call__(self, x: Any, record: bool = True) -> Any:
        import torch

        rec = self.base(x, record=True)
        feature = rec.spikes[self.feature_index]
        silent = torch.zeros((feature.shape[0], feature.shape[1], len(self.readout.bias)), dtype=feature.dtype)
        rec.spikes[self.feature_index + 1 :] = [silent]
        rec.membranes[self.feature_index + 1 :] = [silent]
        return rec


def is_conv_readout_checkpoint(path: str | Path) -> bool:
    """True if ``path`` was written by :func:`save_conv_readout` (read safely)."""
    try:
        return read_payload(path).get("format") == FORMAT
    except CheckpointError:
        return False


def save_conv_readout(model: ConvReadoutModel, path: str | Path) -> Path:

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
    return write_payload(payload, path)


def load_conv_readout(path: str | Path) -> ConvReadoutModel:
    obj = read_payload(path, FORMAT, VERSION)
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


__all__ = [
    "FORMAT",
    "ConvReadoutModel",
    "FloatConvReadout",
    "freeze_conv_readout",
    "is_conv_readout_checkpoint",
    "load_conv_readout",
    "save_conv_readout",
    "summed_scores",
]
