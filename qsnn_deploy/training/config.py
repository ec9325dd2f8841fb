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
from qsnn_deploy.encodings import ENCODINGS, FRAMES, STATIC
from qsnn_deploy.errors import CheckpointError, QsnnError

#: schedules the trainer knows (see qsnn_deploy.training.trainer.make_scheduler)
SCHEDULES = ("none", "step", "loss-step", "cosine")
#: data sets a run may train on: the data layer's registry
DATASETS = DATASET_NAMES
#: network kinds: the conv QSNN of the paper (training/model.py) and the dense current-based
#: SNN for Xylo (training/model_dense.py)
MODEL_KINDS = ("conv", "dense")
#: keys older checkpoints store, translated by :meth:`ModelConfig.from_dict`
_LEGACY_KEYS = ("input_scale", "input_kind")
#: input_kind -> encoding: "events" (per-step vectors) is a frames encoding of shape (C,)
_LEGACY_INPUT_KINDS = {"static": STATIC, "frames": FRAMES, "events": FRAMES}
#: float precisions of the fast training forward (qsnn_deploy.training.precision): fp32, spike
#: for spike the per-step loop's; bf16, the time-batched conv and the dense layer in bfloat16
PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; QsnnError naming the choices otherwise."""
    if precision not in PRECISIONS:
        raise QsnnError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and neuron parameters of the QSNN (everything needed to rebuild it).

    ``kind="conv"`` is the paper's conv net (``conv_channels``, ``kernel_size``, ``batch_norm``,
    snnTorch ``Leaky``); ``kind="dense"`` is a dense net ``in_channels -> hidden... ->
    num_classes`` of snnTorch ``Synaptic`` neurons (``alpha``, ``beta``, ``hop_delay``), whose
    conv fields are ignored.
    """

    kind: str = "conv"
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
    #: how a sample presents over time (:mod:`qsnn_deploy.encodings`): "static", the same image at
    #: every step; "frames", one input per step (DVS frames; for dense models a vector of
    #: ``in_channels`` event counts per step)
    encoding: str = STATIC
    #: dense models: hidden layer widths
    hidden: tuple[int, ...] = ()
    #: dense models: synaptic current decay per step (snnTorch Synaptic's alpha)
    alpha: float = 0.0
    #: dense models: spikes of a hidden layer reach the next layer one step later, as on Xylo
    hop_delay: bool = True
    #: dense models: most spikes a hidden neuron emits in one step (Xylo: 31; outputs: 1)
    hidden_max_spikes: int = 31

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
        if self.kind not in MODEL_KINDS:
            raise QsnnError(f"model kind must be one of {', '.join(MODEL_KINDS)}, got {self.kind!r}")
        if self.encoding not in ENCODINGS:
            raise QsnnError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        if not (math.isfinite(self.input_divisor) and self.input_divisor > 0):
            raise QsnnError(f"input_divisor must be a positive finite number, got {self.input_divisor}")
        if self.kind == "dense":
            self._check_dense()
        elif self.feature_size < 1:
            raise QsnnError(f"input_size {self.input_size} is too small for {len(self.conv_channels)} conv+pool layers")

    def _check_dense(self) -> None:
        if self.encoding != FRAMES:
            raise QsnnError(f"a dense model takes one event vector per step (encoding 'frames'), got {self.encoding!r}")
        if not self.hidden or min(self.hidden) < 1:
            raise QsnnError(f"a dense model needs at least one hidden layer of >= 1 neurons, got hidden={self.hidden}")
        if not 0.0 <= self.alpha <= 1.0:
            raise QsnnError(f"alpha must lie in [0, 1], got {self.alpha}")
        if self.hidden_max_spikes < 1:
            raise QsnnError(f"hidden_max_spikes must be >= 1, got {self.hidden_max_spikes}")

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
        unknown = set(data) - known - set(_LEGACY_KEYS)
        if unknown:
            raise CheckpointError(f"model config has unknown keys: {sorted(unknown)}")
        values = dict(data)
        if "input_kind" in values:  # checkpoints before one encoding vocabulary (qsnn_deploy.encodings)
            kind = values.pop("input_kind")
            if kind not in _LEGACY_INPUT_KINDS:
                raise CheckpointError(f"model config has a bad input_kind {kind!r}")
            values.setdefault("encoding", _LEGACY_INPUT_KINDS[kind])
        if "input_scale" in values:  # checkpoints before input_divisor stored the reciprocal
            scale = values.pop("input_scale")
            if not (isinstance(scale, (int, float)) and scale > 0):
                raise CheckpointError(f"model config has a bad input_scale {scale!r}")
            values.setdefault("input_divisor", float(round(1.0 / scale, 9)))
        for key in ("conv_channels", "hidden"):
            if key in values:
                values[key] = tuple(int(c) for c in values[key])
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
    #: precision of the training steps' forward and backward (PRECISIONS); evaluation is fp32
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise QsnnError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.dataset not in DATASETS:
            raise QsnnError(f"unknown data set {self.dataset!r}; choose from {', '.join(DATASETS)}")
        if self.batch_size < 1 or self.epochs < 0:
            raise QsnnError("batch_size must be >= 1 and epochs >= 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise QsnnError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        check_precision(self.precision)

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
#: alpha = 1 - 2^-2, beta = 1 - 2^-4: exactly Xylo's shift decays with dash_syn = 2, dash_mem = 4.
#: 128 hidden neurons: Xylo IMU's input weights reach hidden neurons 0..127 only and its readout
#: leaves the last 128 (targets/xylo-imu.json), so one hidden layer holds at most 128.
#: input_divisor 15 (events 0..15 -> 0..1): the threshold (1) is then ~1,400 integer units on the
#: chip (int8 weights, weight clip 1), leaving the int16 membrane room for ~23 thresholds; a
#: weaker drive (1/60) trained no better in 2-epoch trials and needs thresholds of ~5,700 units,
#: so a neuron saturates its membrane before it fires 6 spikes in a step.
_XYLO_ROWS = dict(kind="dense", in_channels=16, hidden=(128,), num_classes=10, timesteps=28, encoding="frames", input_divisor=15.0)
_DVS = dict(in_channels=2, input_size=32, conv_channels=(16, 32), num_classes=11, encoding="frames", input_divisor=1.0)

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
        Preset(
            "fmnist-rows-xylo",
            ModelConfig(**_XYLO_ROWS, weight_bits=8, alpha=0.75, beta=0.9375, threshold=1.0, slope=5.0, batch_norm=False, dropout=0.0),
            TrainConfig(
                dataset="fmnist-rows", epochs=100, lr=5.0e-3, batch_size=128, cosine_period_epochs=100, grad_clip=True, weight_clip=True
            ),
            "dense Synaptic SNN for Xylo IMU: Fashion-MNIST rows (T=28, 16 channels), 16-128-10, int8 weights",
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


__all__ = [
    "MODEL_KINDS",
    "ModelConfig",
    "TrainConfig",
    "Preset",
    "PRESETS",
    "get_preset",
    "override",
    "SCHEDULES",
    "DATASETS",
    "PRECISIONS",
    "check_precision",
]
