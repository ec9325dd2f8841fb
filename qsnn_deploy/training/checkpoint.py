"""Checkpoints: save a trained QSNN with its config, load it safely.

A checkpoint is a dict of plain data and tensors, so it loads with
``torch.load(weights_only=True)``: no code in the file runs on load. A file that needs full
unpickling is refused unless the caller passes ``trust=True`` (CLI: ``--trust-checkpoint``).

Layout (``format`` / ``version`` identify it)::

    {"format": "qsnn-deploy-checkpoint", "version": 1,
     "model_config": {...}, "train_config": {...} | None, "preset": str | None,
     "state_dict": {name: tensor}, "metrics": {...},
     "train_state": {...}}            # only in a run's last.pt, for --resume

A plain ``state_dict`` saved by the reference code (jeshraghian/QSNNs: ``conv1``,
``conv1_bn``, ``conv2``, ``conv2_bn``, ``fc1``, ``lif1``..) is imported through a key
mapping; its architecture must then be given (a preset and flags), and the file itself
decides the rest (:func:`reference_config`): beta and threshold are the ``lif*`` buffers'
values, ``fc1.bias`` (the float net's) turns on ``fc_bias``, and the ``conv*_bn`` layers the
reference DVS net creates even with ``batch_norm=False`` are dropped with a note.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qsnn_deploy.atomic import atomic_path
from qsnn_deploy.errors import CheckpointError, QsnnError
from qsnn_deploy.training.config import ModelConfig, TrainConfig

log = logging.getLogger(__name__)

FORMAT = "qsnn-deploy-checkpoint"
VERSION = 1

#: state_dict entries that are transient simulation state, not parameters
_TRANSIENT = re.compile(r"^lifs\.\d+\.mem$")
#: reference-code layer names -> ours
_REFERENCE_KEYS = [
    (re.compile(r"^conv(\d+)_bn\.(.*)$"), lambda m: f"bns.{int(m[1]) - 1}.{m[2]}"),
    (re.compile(r"^conv(\d+)\.(.*)$"), lambda m: f"convs.{int(m[1]) - 1}.{m[2]}"),
    (re.compile(r"^fc1\.(.*)$"), lambda m: f"fc.{m[1]}"),
    (re.compile(r"^lif(\d+)\.(.*)$"), lambda m: f"lifs.{int(m[1]) - 1}.{m[2]}"),
]


@dataclass
class Checkpoint:
    """A loaded checkpoint (see the module docstring for the on-disk layout)."""

    model_config: ModelConfig
    state_dict: dict[str, Any]
    train_config: TrainConfig | None = None
    preset: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None
    source: str = ""
    #: what the import changed or ignored, for the user (also logged as warnings)
    notes: list[str] = field(default_factory=list)

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_config": self.model_config.to_dict(),
            "train_config": self.train_config.to_dict() if self.train_config else None,
            "preset": self.preset,
            "state_dict": self.state_dict,
            "metrics": self.metrics,
            "train_state": self.train_state,
        }


def model_state(model: Any) -> dict[str, Any]:
    """The model's state_dict without transient neuron state, detached and on CPU."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not _TRANSIENT.match(k)}


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    """Atomically write ``ckpt`` to ``path``."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(ckpt.to_payload(), tmp)
    return Path(path)


def _torch_load(path: Path, trust: bool) -> Any:
    import torch

    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if not trust:
            raise CheckpointError(
                f"{path}: refused to unpickle: the file holds Python objects other than tensors and plain data, "
                "which could run code on load; pass --trust-checkpoint only if you trust its source"
            ) from exc
        raise CheckpointError(f"{path}: corrupt checkpoint ({exc})") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError, ImportError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {msg}") from exc


def _is_reference_state_dict(obj: dict[str, Any]) -> bool:
    return any(k.startswith(("conv1.", "fc1.")) for k in obj)


def _map_reference_keys(sd: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in sd.items():
        for pattern, repl in _REFERENCE_KEYS:
            m = pattern.match(key)
            if m:
                out[repl(m)] = value
                break
        else:
            raise CheckpointError(f"reference state_dict has a layer we cannot map: {key!r}")
    return out


def load_checkpoint(path: str | Path, *, trust: bool = False, config: ModelConfig | None = None) -> Checkpoint:
    """Load a checkpoint, or a reference-code state_dict when ``config`` is given.

    Raises:
        CheckpointError: missing, corrupt, untrusted or unsupported file, with the reason.
    """
    import torch

    path = Path(path)
    obj = _torch_load(path, trust)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    if obj.get("format") == FORMAT:
        return checkpoint_from_payload(obj, str(path))  # checks the weights are finite
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()) and _is_reference_state_dict(obj):
        if config is None:
            raise CheckpointError(f"{path}: a plain reference-code state_dict carries no config; give one with --preset (and flags)")
        ckpt = _reference_checkpoint(_map_reference_keys(obj), config, str(path))
        check_finite(ckpt.state_dict, path)
        return ckpt
    if isinstance(obj.get("format"), str):
        raise CheckpointError(
            f"{path}: a {obj['format']} file, not a QAT model checkpoint ({FORMAT}); the CLI's simulate, export and parity read it"[:300]
        )
    raise CheckpointError(f"{path}: not a qsnn-deploy checkpoint (no 'format' key) nor a reference state_dict")


def checkpoint_from_payload(obj: dict[str, Any], source: str) -> Checkpoint:
    """A :class:`Checkpoint` from a loaded ``qsnn-deploy-checkpoint`` dict (also one nested in another file)."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{source}: not a {FORMAT} payload")
    version = obj.get("version")
    if version != VERSION:
        raise CheckpointError(f"{source}: unsupported checkpoint version {version!r} (this qsnn-deploy reads {VERSION})")
    missing = [k for k in ("model_config", "state_dict") if not isinstance(obj.get(k), dict)]
    if missing:
        raise CheckpointError(f"{source}: checkpoint lacks {', '.join(missing)}")
    tc = obj.get("train_config")
    try:
        model_config = ModelConfig.from_dict(obj["model_config"])
        train_config = TrainConfig.from_dict(tc) if isinstance(tc, dict) else None
    except (QsnnError, TypeError, ValueError) as exc:  # e.g. a non-positive threshold
        raise CheckpointError(f"{source}: invalid config in the checkpoint: {exc}"[:400]) from None
    ckpt = Checkpoint(
        model_config=model_config,
        state_dict=obj["state_dict"],
        train_config=train_config,
        preset=obj.get("preset"),
        metrics=obj.get("metrics") or {},
        train_state=obj.get("train_state"),
        source=source,
    )
    check_finite(ckpt.state_dict, source)
    return ckpt


def _reference_checkpoint(state_dict: dict[str, Any], config: ModelConfig, source: str) -> Checkpoint:
    notes = []
    unused_bn = sorted(k for k in state_dict if k.startswith("bns."))
    if unused_bn and not config.batch_norm:
        # the reference DVS net builds conv*_bn even with batch_norm=False and never calls them
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("bns.")}
        notes.append(f"ignored {len(unused_bn)} unused batch-norm entries (conv*_bn; the config has batch_norm off)")
    config, changed = reference_config(config, state_dict, source)
    notes += changed
    for note in notes:
        log.warning("%s: %s", source, note)
    return Checkpoint(model_config=config, state_dict=state_dict, source=source, notes=notes)


def _shared_value(state_dict: dict[str, Any], name: str, source: str) -> float | None:
    """The one value of buffer ``name`` over all ``lifs.*`` layers (None if absent), shortest float32 repr."""
    import numpy as np

    values = {k: float(v) for k, v in state_dict.items() if re.fullmatch(rf"lifs\.\d+\.{name}", k) and v.numel() == 1}
    if not values:
        return None
    if len(set(values.values())) > 1:
        raise CheckpointError(f"{source}: the LIF layers have different {name} values {values}; the architecture shares one")
    # 0.994 rather than 0.9940000176...: the same float32, as the reference config wrote it
    return float(str(np.float32(next(iter(values.values())))))


def reference_config(config: ModelConfig, state_dict: dict[str, Any], source: str = "checkpoint") -> tuple[ModelConfig, list[str]]:
    """``config`` with what a reference state_dict itself states: LIF beta/threshold, fc bias.

    Returns the config and a note for each value that differs from the given one.
    """
    found: dict[str, Any] = {"beta": _shared_value(state_dict, "beta", source)}
    found["threshold"] = _shared_value(state_dict, "threshold", source)
    found["fc_bias"] = "fc.bias" in state_dict
    changes = {k: v for k, v in found.items() if v is not None and v != getattr(config, k)}
    notes = [f"{k} = {v} from the checkpoint (the preset says {getattr(config, k)})" for k, v in changes.items()]
    try:
        return dataclasses.replace(config, **changes), notes
    except QsnnError as exc:  # e.g. a non-positive threshold in the file
        raise CheckpointError(f"{source}: invalid value in the checkpoint: {exc}") from None


def check_finite(state_dict: dict[str, Any], where: str | Path) -> None:
    """Raise if any floating tensor in ``state_dict`` holds NaN or Inf, naming the tensor."""
    import torch

    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{where}: tensor {key!r} contains NaN or Inf")
        if isinstance(value, float) and not math.isfinite(value):
            raise CheckpointError(f"{where}: value {key!r} is NaN or Inf")


def build_model(ckpt: Checkpoint):
    """Rebuild the network of ``ckpt`` (conv QSNN or dense SNN) with its weights, in eval mode."""
    from qsnn_deploy.training.model import build_network

    model = build_network(ckpt.model_config)
    expected = {k for k in model.state_dict() if not _TRANSIENT.match(k)}
    given = set(ckpt.state_dict)
    missing = sorted(k for k in expected - given if k.endswith(("weight", "bias", "running_mean", "running_var")))
    unknown = sorted(k for k in given - expected if not _TRANSIENT.match(k))
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unknown:
            parts.append(f"unexpected {unknown[:5]}")
        raise CheckpointError(f"{ckpt.source or 'checkpoint'}: state_dict does not match the architecture: {'; '.join(parts)}")
    try:
        model.load_state_dict(ckpt.state_dict, strict=False)
    except RuntimeError as exc:  # one line naming the layers, e.g. "size mismatch for fc.weight: ..."
        detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise CheckpointError(f"{ckpt.source or 'checkpoint'}: {detail}"[:600]) from exc
    model.eval()
    return model
