"""Model and training configuration, and the paper's presets (Table I / reference code).

A config is plain data (ints, floats, strings, tuples) so that a checkpoint stores it as a
dict and loads it with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from qsnn_deploy.data.loaders import DATASET_NAMES
from qsnn_deploy.errors import CheckpointError, QsnnError

#: schedules the trainer knows (see qsnn_deploy.training.trainer.make_scheduler)
SCHEDULES = ("none", "step", "loss-step", "cosine")
#: data sets a run may train on: the data layer's registry
DATASETS = DATASET_NAMES


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and neuron parameters of the QSNN (everything needed to rebuild it)."""

    in_channels: int = 1
    input_size: int = 28
    conv_channels: tuple[int, ...] = (16, 64)
    kernel_size: int = 5
    num_classes: int = 10
    #: weight bit width for Brevitas QAT; 32 means plain float weights
    weight_bits: int = 4
    beta: float = 0.974
    threshold: float = 2.473
    slope: float = 5.5565
    batch_norm: bool = True
    dropout: float = 0.0736
    timesteps: int = 100
    #: raw inputs are divided by this before the first conv, in the model's float type, as
    #: torchvision's ``ToTensor`` does (``x / 255``, pixels 0..255 -> [0, 1]); ``x * (1/255)``
    #: would differ in float32 for 126 of the 256 pixel values and flip spikes over T steps
    input_divisor: float = 255.0
    #: the dense layer adds a float bias (the reference code's float ``fc1``; frozen into the
    #: integer bias of the last LIF layer)
    fc_bias: bool = False
    #: "static": the same image at every step; "frames": one input frame per step (DVS)
    input_kind: str = "static"

    def __post_init__(self) -> None:
        if not (2 <= self.weight_bits <= 8 or self.weight_bits == 32):
            raise QsnnError(f"weight_bits must be 2..8 or 32 (float), got {self.weight_bits}")
        if self.timesteps < 1:
            raise QsnnError(f"timesteps must be >= 1, got {self.timesteps}")
        if not 0.0 <= self.beta <= 1.0:
            raise QsnnError(f"beta must lie in [0, 1], got {self.beta}")
        if not self.threshold > 0:
            raise QsnnError(f"threshold must be positive, got {self.threshold}")
        if not 0.0 <= self.dropout < 1.0:
            raise QsnnError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.input_kind not in ("static", "frames"):
            raise QsnnError(f"input_kind must be 'static' or 'frames', got {self.input_kind!r}")
        if not (math.isfinite(self.input_divisor) and self.input_divisor > 0):
            raise QsnnError(f"input_divisor must be a positive finite number, got {self.input_divisor}")
        if self.feature_size < 1:
            raise QsnnError(f"input_size {self.input_size} is too small for {len(self.conv_channels)} conv+pool layers")

    @property
    def input_quantum(self) -> float:
        """The real value of one input step (1/255 for pixels): what the integer freeze multiplies by."""
        return 1.0 / self.input_divisor

    @property
    def quantized(self) -> bool:
        return self.weight_bits < 32

    @property
    def feature_size(self) -> int:
        """Spatial size after the last conv + 2x2 pool."""
        size = self.input_size
        for _ in self.conv_channels:
            size = (size - self.kernel_size + 1) // 2
        return size

    @property
    def dense_in(self) -> int:
        return self.conv_channels[-1] * self.feature_size**2

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known - {"input_scale"}
        if unknown:
            raise CheckpointError(f"model config has unknown keys: {sorted(unknown)}")
        values = dict(data)
        if "input_scale" in values:  # checkpoints before input_divisor stored the reciprocal
            scale = values.pop("input_scale")
            if not (isinstance(scale, (int, float)) and scale > 0):
                raise CheckpointError(f"model config has a bad input_scale {scale!r}")
            values.setdefault("input_divisor", float(round(1.0 / scale, 9)))
        if "conv_channels" in values:
            values["conv_channels"] = tuple(int(c) for c in values["conv_channels"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise CheckpointError(f"model config is malformed: {exc}") from exc


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation recipe (paper Sec. III and Table I)."""

    dataset: str = "fmnist"
    epochs: int = 500
    batch_size: int = 128
    lr: float = 2.908e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"
    #: cosine period and the step schedule's interval, in epochs
    cosine_period_epochs: int = 10
    step_epochs: int = 15
    grad_clip: bool = True
    weight_clip: bool = True
    correct_rate: float = 0.8
    incorrect_rate: float = 0.2
    #: epochs without a better validation accuracy before stopping; the reference code
    #: (jeshraghian/QSNNs, */run.py) waits 100, i.e. five full cosine cycles
    patience: int = 100
    #: share of the training set held out for early stopping; 0 trains on all of it (a refit),
    #: with no validation and hence no early stopping
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise QsnnError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.dataset not in DATASETS:
            raise QsnnError(f"unknown data set {self.dataset!r}; choose from {', '.join(DATASETS)}")
        if self.batch_size < 1 or self.epochs < 0:
            raise QsnnError("batch_size must be >= 1 and epochs >= 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise QsnnError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        values = {k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(cls)}}
        if "adam_betas" in values:
            values["adam_betas"] = tuple(values["adam_betas"])
        return cls(**values)


@dataclass(frozen=True)
class Preset:
    name: str
    model: ModelConfig
    train: TrainConfig
    note: str = ""


_MNIST = dict(in_channels=1, input_size=28, conv_channels=(16, 64), num_classes=10)
_DVS = dict(in_channels=2, input_size=32, conv_channels=(16, 32), num_classes=11, input_kind="frames", input_divisor=1.0)

#: Table I of Eshraghian et al. 2022; fmnist values to the reference code's precision.
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "fmnist-int4",
            ModelConfig(**_MNIST, weight_bits=4, beta=0.974, threshold=2.473, slope=5.5565, batch_norm=True, dropout=0.0736),
            TrainConfig(dataset="fmnist", lr=2.908e-3, batch_size=128, grad_clip=False, weight_clip=False),
            "Table I FMNIST int4 (no grad or weight clip)",
        ),
        Preset(
            "fmnist-float",
            ModelConfig(**_MNIST, weight_bits=32, beta=0.39, threshold=1.47, slope=7.66, batch_norm=True, dropout=0.13),
            TrainConfig(dataset="fmnist", lr=2.0e-3, batch_size=128, grad_clip=True, weight_clip=True),
            "Table I FMNIST flt32 / reference fmnist/conf.py",
        ),
        Preset(
            "mnist-int4",
            ModelConfig(**_MNIST, weight_bits=4, beta=0.99, threshold=2.9, slope=13.8, batch_norm=True, dropout=0.0),
            TrainConfig(dataset="mnist", lr=5.4e-3, batch_size=128, grad_clip=True, weight_clip=False),
            "Table I MNIST int4",
        ),
        Preset(
            "mnist-float",
            ModelConfig(**_MNIST, weight_bits=32, beta=0.92, threshold=2.0, slope=6.0, batch_norm=True, dropout=0.09),
            TrainConfig(dataset="mnist", lr=1.9e-3, batch_size=128, grad_clip=True, weight_clip=True),
            "Table I MNIST flt32",
        ),
        Preset(
            "dvs-int4",
            ModelConfig(**_DVS, weight_bits=4, beta=0.61, threshold=0.4, slope=4.4, batch_norm=False, dropout=0.20),
            TrainConfig(dataset="dvs", lr=2.6e-3, batch_size=16, grad_clip=True, weight_clip=True),
            "Table I DVS128 int4",
        ),
        Preset(
            "dvs-float",
            ModelConfig(**_DVS, weight_bits=32, beta=0.72, threshold=2.5, slope=9.7, batch_norm=True, dropout=0.29),
            TrainConfig(dataset="dvs", lr=2.4e-3, batch_size=16, grad_clip=False, weight_clip=True),
            "Table I DVS128 flt32",
        ),
    ]
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise QsnnError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


def override(cfg: Any, **changes: Any) -> Any:
    """Return ``cfg`` with the given fields replaced, ignoring ``None`` (flag not given)."""
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})


__all__ = ["ModelConfig", "TrainConfig", "Preset", "PRESETS", "get_preset", "override", "SCHEDULES", "DATASETS"]
