r"""K parallel stacks of LIF layers whose hidden weights are fixed "witnesses", and a linear readout.

This is the network of Udupi, Yang and Zhai's parameter reconstruction (docs/convex.md). Stack
k (of K) has L LIF layers of widths m_1 .. m_L; layer 1 of every stack reads the input, layer
l > 1 of stack k reads layer l - 1 of the same stack only, so a layer of the whole network is
one block-diagonal matrix. Every hidden neuron is the target's integer LIF, with A the integer
synaptic sum, in the arithmetic of :data:`HIDDEN_ARITHMETIC` (``ge``, immediate reset)::

    V'[t] = sat(floor(V[t-1] * M / 2^k) + A[t] + B)        beta = M / 2^k
    S[t]  = V'[t] >= Theta_l
    V[t]  = V'[t] - S[t] * Theta_l      (reset "subtract")   or   V'[t] * (1 - S[t])   ("zero")

The **features** are the spikes of the last hidden layer (K * m_L neurons): at the last step
(``features="last"``, binary, the paper's readout step) or counted over all T steps
(``features="count"``). The readout is linear, ``scores = features @ W.T + b``, its argmax the
class. Witnesses are Gaussian integers (``cvx``) or a surrogate-trained net's rounded weights
(``sg-cvx``): the hidden network is integer from the start, so the features that the convex
problem sees are the deployed graph's, bit for bit.

The same module runs in float (``integer=False``) with a fast-sigmoid surrogate gradient, for
surrogate training (``sg``, ``cvx-sg``); its weights are kept in the integer units and rounded
with a straight-through estimator, so rounding them at the end changes nothing but the decay's
floor.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from qsnn_deploy.errors import QsnnError
from qsnn_deploy.ir.arithmetic import NeuronArithmetic
from qsnn_deploy.ir.dtypes import IntType

FEATURE_MODES = ("last", "count")
RESETS = ("subtract", "zero")
#: slope of the fast-sigmoid surrogate, in units of 1 / Theta (snnTorch's default is 25 / theta=1)
SURROGATE_SLOPE = 25.0


@dataclass(frozen=True)
class StackConfig:
    """Shape and neuron model of the parallel LIF stacks (all integers: the deployed values)."""

    input_size: int  # D, input channels per step
    num_classes: int
    timesteps: int
    stacks: int = 128  # K
    widths: tuple[int, ...] = (4, 4)  # m_1 .. m_L per stack; K * m_L features
    decay_mul: int = 224  # M: beta = M / 2^decay_shift = 0.875
    decay_shift: int = 8
    reset: str = "subtract"
    features: str = "last"
    weight_std: float = 24.0  # witness weights ~ N(0, weight_std), rounded, in weight_bits
    threshold_rel: float = 1.0  # Theta_l = threshold_rel * weight_std * sqrt(active fan-in of layer l)
    bias_rel: float = 1.0  # B ~ N(0, bias_rel * Theta_l)
    input_active: int = 1  # inputs nonzero per step (1 for one-hot tasks), for the threshold scale
    input_max: int = 1  # largest input value (1 for one-hot, 255 for pixels)
    weight_bits: int = 8
    readout_bits: int = 8
    state_bits: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.input_size >= 1 and self.num_classes >= 2 and self.timesteps >= 1, "input_size, num_classes >= 2, timesteps >= 1"),
            (self.stacks >= 1 and len(self.widths) >= 1 and min(self.widths) >= 1, "stacks >= 1 and widths >= 1"),
            (self.features in FEATURE_MODES, f"features must be one of {FEATURE_MODES}"),
            (self.reset in RESETS, f"reset must be one of {RESETS}"),
            (2 <= self.weight_bits <= 16 and 2 <= self.readout_bits <= 16, "weight_bits and readout_bits in 2..16"),
            (0 <= self.decay_mul <= 2**self.decay_shift, "decay_mul in 0..2^decay_shift"),
            (self.weight_std > 0 and self.threshold_rel > 0 and self.bias_rel >= 0, "weight_std, threshold_rel > 0"),
        ]
        for ok, what in checks:
            if not ok:
                raise QsnnError(f"convex stack config: {what}")

    @property
    def arithmetic(self) -> NeuronArithmetic:
        return hidden_arithmetic(self.state_bits, self.decay_shift, self.reset)

    @property
    def bias_steps(self) -> int:
        """Steps over which the readout adds its bias: the readout membrane integrates W S + b at
        every step with ``features="count"`` (so the score's bias is T * b), once with ``"last"``."""
        return self.timesteps if self.features == "count" else 1

    @property
    def feature_count(self) -> int:
        return self.stacks * self.widths[-1]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise QsnnError(f"convex stack config: unknown fields {sorted(unknown)}")
        return cls(**{**data, "widths": tuple(data.get("widths", (4, 4)))})


def hidden_arithmetic(state_bits: int, decay_shift: int, reset: str) -> NeuronArithmetic:
    """The hidden neurons' arithmetic: the paper's Heaviside H(V - Theta) (``ge``), reset in the same step."""
    return NeuronArithmetic(
        state=IntType(state_bits, True), decay_shift=decay_shift, rounding="floor", compare="ge", reset=reset, reset_timing="immediate"
    )


@dataclass
class StackWeights:
    """Integer parameters of the hidden stacks: per layer l, (K, m_l, m_{l-1}) weights, (K, m_l) biases, Theta_l."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    thresholds: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"weights": [w.tolist() for w in self.weights], "biases": [b.tolist() for b in self.biases], "thresholds": self.thresholds}

    def dense(self) -> list[np.ndarray]:
        """Per layer, the whole network's (K * m_l, fan-in) matrix: block-diagonal after layer 1."""
        first = self.weights[0]
        mats = [first.reshape(-1, first.shape[2])]
        for w in self.weights[1:]:
            k, m, p = w.shape
            block = np.zeros((k * m, k * p), np.int64)
            for i in range(k):
                block[i * m : (i + 1) * m, i * p : (i + 1) * p] = w[i]
            mats.append(block)
        return mats

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackWeights:
        return cls(
            [np.asarray(w, np.int64) for w in data["weights"]], [np.asarray(b, np.int64) for b in data["biases"]], list(data["thresholds"])
        )


def layer_thresholds(cfg: StackConfig) -> list[int]:
    """Theta_l: the witness sums' typical size, so a neuron fires on part of the inputs."""
    active = [cfg.input_active * cfg.input_max**2, *cfg.widths[:-1]]
    return [max(1, round(cfg.threshold_rel * cfg.weight_std * math.sqrt(a / 2 if i else a))) for i, a in enumerate(active)]


def gaussian_witnesses(cfg: StackConfig) -> StackWeights:
    """Fixed random hidden weights (the ``cvx`` witnesses): rounded Gaussians, clipped to weight_bits."""
    rng = np.random.default_rng((cfg.seed, 0xC0E))
    wmax = 2 ** (cfg.weight_bits - 1) - 1
    thresholds = layer_thresholds(cfg)
    weights, biases = [], []
    fan_in = cfg.input_size
    for width, theta in zip(cfg.widths, thresholds):
        weights.append(np.clip(np.rint(rng.normal(0.0, cfg.weight_std, (cfg.stacks, width, fan_in))), -wmax, wmax).astype(np.int64))
        biases.append(np.rint(rng.normal(0.0, cfg.bias_rel * theta, (cfg.stacks, width))).astype(np.int64))
        fan_in = width
    return StackWeights(weights, biases, thresholds)


def _as_batch(x: Any, cfg: StackConfig):
    """(N, T, C, 1, 1) or (N, T, C) frames -> (N, T, C) float64 torch tensor."""
    import torch

    x = torch.as_tensor(np.asarray(x)).to(torch.float64)
    x = x.reshape(x.shape[0], x.shape[1], -1)
    if x.shape[1] != cfg.timesteps or x.shape[2] != cfg.input_size:
        raise QsnnError(f"input must be (N, T={cfg.timesteps}, {cfg.input_size}) frames, got {tuple(x.shape)}")
    return x


def integer_features(cfg: StackConfig, hidden: StackWeights, x: Any, batch_size: int = 1024) -> np.ndarray:
    """Features of the integer hidden network on frames ``x``: (N, K * m_L) int64.

    Runs in float64, which is exact here: every value is an integer below 2^53 (a 32-bit state
    times a decay multiplier of at most 2^16), and floor division by 2^k is exact on such values.
    """
    import torch

    xs = _as_batch(x, cfg)
    params = [
        (torch.from_numpy(m).double().T, torch.from_numpy(b.reshape(-1)).double(), float(t))
        for m, b, t in zip(hidden.dense(), hidden.biases, hidden.thresholds)
    ]
    smin, smax = float(cfg.arithmetic.state.min), float(cfg.arithmetic.state.max)
    out = []
    with torch.no_grad():
        for start in range(0, xs.shape[0], batch_size):
            xb = xs[start : start + batch_size]
            n = xb.shape[0]
            v = [torch.zeros(n, cfg.stacks * m, dtype=torch.float64) for m in cfg.widths]
            feats = torch.zeros(n, cfg.feature_count, dtype=torch.float64)
            for t in range(cfg.timesteps):
                h = xb[:, t]
                for i, (w, b, theta) in enumerate(params):
                    u = torch.floor(v[i] * (cfg.decay_mul / 2**cfg.decay_shift)) + h @ w + b
                    u = u.clamp(smin, smax)
                    h = (u >= theta).double()
                    v[i] = u - h * theta if cfg.reset == "subtract" else u * (1 - h)
                if cfg.features == "count" or t == cfg.timesteps - 1:
                    feats += h
            out.append(feats.to(torch.int64).numpy())
    return np.concatenate(out)


def check_state_bound(cfg: StackConfig, hidden: StackWeights) -> None:
    """Raise unless no hidden membrane can leave the state type (so ``sat`` never acts).

    |V| <= (max |A| + |B| + Theta) / (1 - beta), capped by T for beta near 1.
    """
    x_max = cfg.input_max
    for i, (w, b, theta) in enumerate(zip(hidden.weights, hidden.biases, hidden.thresholds)):
        a = np.abs(w).sum(axis=2).max() * x_max
        beta = cfg.decay_mul / 2**cfg.decay_shift
        steps = min(1.0 / (1.0 - beta), cfg.timesteps) if beta < 1 else cfg.timesteps
        bound = (float(a) + float(np.abs(b).max()) + theta) * steps
        if bound >= cfg.arithmetic.state.max:
            raise QsnnError(f"hidden layer {i + 1}: membrane bound {bound:.3g} exceeds the state type {cfg.arithmetic.state.name}")
        x_max = 1


__all__ = [
    "FEATURE_MODES",
    "StackConfig",
    "StackWeights",
    "check_state_bound",
    "gaussian_witnesses",
    "hidden_arithmetic",
    "integer_features",
    "layer_thresholds",
]
