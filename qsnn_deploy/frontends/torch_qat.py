r"""Freeze a trained QSNN into the integer graph of a target (torch model -> IR).

For each spiking layer the float model computes, per channel c (eval mode)::

    I[t] = BN(avg_pool2x2(conv(x, s * W)))          W integer (Brevitas), s its scale
         = a_c * A[t] + b_c                         A = sum_pool2x2(conv(x_int, W)), integer
    a_c  = g_c * s * q / (4 * sqrt(var_c + eps)),   b_c = beta_c - g_c * mean_c / sqrt(var_c + eps)
    U[t] = beta * U[t-1] + I[t] - S[t-1] * theta,   S[t] = U[t] > theta

with q the input quantum (1/255 for 8-bit pixels, 1 for spikes), g/beta/mean/var the BN
affine and running statistics (a_c = s * q and b_c = 0 without BN; the dense layer has no
pool, so no 1/4, and b_c is its float bias if it has one). A channel with a_c < 0 has its weights negated, so every a_c > 0. Dividing
the membrane by a_c and scaling by 2^F (F fraction bits) gives the integer neuron::

    V[t] = D(V[t-1]) + (A[t] << F) + B_c - S[t-1] * Theta_c
    Theta_c = round(theta / a_c * 2^F),   B_c = round(b_c / a_c * 2^F)
    D(V) = (V * round(beta * 2^k) + 2^(k-1)) >> k                    (k: target decay shift)

F is chosen per layer as the largest value for which the worst-case membrane
(|A|_max + |b/a| + theta/a) * min(1/(1-beta), T), times 2^F, fits the target's state width,
so the state cannot overflow for any input -- unless F had to be clamped to 0 (a state too
narrow even for 0 fraction bits): then extreme inputs can saturate the membrane, and
``export``/``simulate`` report it. docs/arithmetic.md derives each rounding and
measures the error it causes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from qsnn_deploy.analysis.bounds import weight_gain
from qsnn_deploy.encodings import STATIC
from qsnn_deploy.errors import CheckpointError, TargetError
from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Input, IntTensor, Linear, Output, SumPool2d
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.targets import TargetProfile, load_target

MAX_FRACTION_BITS = 40


def quantized_weights(layer: Any, name: str, target: TargetProfile) -> tuple[np.ndarray, float]:
    """Integer weights and per-tensor scale of a Brevitas layer, checked against the target."""
    if not hasattr(layer, "quant_weight"):
        raise TargetError(f"layer {name!r} has float weights; freeze needs a QAT model with weight bits <= {target.weight.bits}")
    qw = layer.quant_weight()
    scale = qw.scale.detach().double().reshape(-1)
    if scale.numel() != 1:
        raise TargetError(f"layer {name!r} has per-channel weight scales; only per-tensor scaling is supported")
    if float(qw.zero_point.detach().abs().max()) != 0.0:
        raise TargetError(f"layer {name!r} has a non-zero weight zero point; only symmetric weights are supported")
    w_int = qw.int().detach().cpu().numpy().astype(np.int64)
    if not target.weight.contains(w_int):
        raise TargetError(
            f"layer {name!r}: weights span [{w_int.min()}, {w_int.max()}], beyond target weight type {target.weight.name} "
            f"[{target.weight.min}, {target.weight.max}]"
        )
    s = float(scale[0])
    if not (math.isfinite(s) and s > 0):
        raise CheckpointError(f"layer {name!r}: weight scale {s} is not a positive finite number")
    return w_int, s


def _affine(bn: Any, gain: float, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (a_c, b_c) of I = a_c * A + b_c (see the module docstring)."""
    if bn is None:
        return np.full(channels, gain), np.zeros(channels)
    inv_std = 1.0 / np.sqrt(bn.running_var.detach().double().numpy() + bn.eps)
    g = bn.weight.detach().double().numpy()
    return g * gain * inv_std, bn.bias.detach().double().numpy() - g * bn.running_mean.detach().double().numpy() * inv_std


def _fraction_bits(a: np.ndarray, b: np.ndarray, theta: float, beta: float, a_max: float, timesteps: int, state: IntType) -> int:
    memory = timesteps if beta >= 1.0 else min(1.0 / (1.0 - beta), float(timesteps))
    reach = (a_max + np.abs(b / a).max() + (theta / a).max()) * memory
    f = state.bits - 1 - math.ceil(math.log2(max(reach, 1.0)) + 1e-12)
    return int(min(max(f, 0), MAX_FRACTION_BITS))


def _lif_node(name: str, a: np.ndarray, b: np.ndarray, theta: float, beta: float, frac: int, target: TargetProfile) -> LIF:
    scale = 2.0**frac
    biases = np.rint(b / a * scale).astype(np.int64)
    # Theta - B = floor((theta - b) / a * 2^F) makes the first decision exact: with V = A 2^F + B,
    # V > Theta  <=>  A 2^F > floor(x)  <=>  A 2^F > x  for integer A and real x = (theta - b) 2^F / a.
    thresholds = biases + np.floor((theta - b) / a * scale).astype(np.int64)
    if (thresholds < 1).any():
        raise TargetError(f"layer {name!r}: a threshold rounds below 1 at {frac} fraction bits (weight/BN scale too large)")
    for what, vals in (("threshold", thresholds), ("bias", biases)):
        if not target.state.contains(vals):
            raise TargetError(f"layer {name!r}: {what} needs more than the target's {target.state.name} state")
    return LIF(
        threshold=IntTensor(thresholds, target.state),
        bias=IntTensor(biases, target.state),
        decay_mul=int(round(beta * 2**target.decay_shift)),
        input_shift=frac,
        **target.arithmetic.lif_fields(),
    )


def frozen_metadata(cfg: Any, target: TargetProfile, layers: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``graph.metadata`` every frontend records: producer, target, the model config and per-layer folds."""
    return {
        "producer": "qsnn-deploy freeze",
        "target": target.name,
        "model_config": cfg.to_dict(),
        "layers": layers,
    }


def freeze(model: Any, target: TargetProfile | str = "int4-core", *, fraction_bits: int | None = None) -> Graph:
    """Freeze a QSNN (``qsnn_deploy.training.model.QSNN``) into the integer graph of ``target``.

    A dense current-based model (``kind="dense"``) goes to :func:`~qsnn_deploy.frontends.torch_dense.freeze_dense`.

    Args:
        model: the trained QAT model (its eval-mode BN statistics are used).
        target: a :class:`TargetProfile` or the name of a built-in one.
        fraction_bits: force F for every layer instead of the per-layer worst-case choice.

    Raises:
        TargetError: the model cannot be expressed on the target (float weights, weights
            beyond the weight type, thresholds or biases beyond the state width).
    """
    target = load_target(target)
    cfg = model.config
    if cfg.kind == "dense":  # the current-based dense SNN freezes into CubaLIF layers
        from qsnn_deploy.frontends.torch_dense import freeze_dense

        return freeze_dense(model, target)
    nodes: list[tuple[str, Any]] = [
        ("input", Input(shape=(cfg.in_channels, cfg.input_size, cfg.input_size), dtype=target.input, encoding=cfg.encoding))
    ]
    layer_meta: list[dict[str, Any]] = []
    n_conv = len(model.convs)
    for i, (fold, lif, meta) in enumerate(spiking_layers(model, target, fraction_bits)):
        weight = IntTensor(fold.weight, target.weight)
        if i < n_conv:
            nodes += [(fold.layer, Conv2d(weight=weight)), (f"pool{i + 1}", SumPool2d(kernel=(2, 2), stride=(2, 2)))]
        else:
            nodes += [("flatten", Flatten()), (fold.layer, Linear(weight=weight))]
        nodes.append((f"lif{i + 1}", lif))
        layer_meta.append({"layer": fold.layer, "weight_scale": fold.weight_scale, "input_quantum": fold.input_quantum, **meta})
    nodes.append(("output", Output()))
    metadata = frozen_metadata(cfg, target, layer_meta)
    return Graph.sequential(nodes, metadata, timesteps=cfg.timesteps)


@dataclass(frozen=True)
class LayerFold:
    """One synaptic layer folded to I = a_c * A + b_c (module docstring), channels flipped so a_c > 0."""

    layer: str  # conv1, conv2, ..., fc
    weight: np.ndarray  # integer weights, negative-scale channels negated
    weight_scale: float  # s
    input_quantum: float  # q
    a: np.ndarray  # (C,) a_c > 0
    b: np.ndarray  # (C,) b_c
    a_max: float  # max |A| over all inputs the layer can see


def layer_folds(model: Any, target: TargetProfile | str = "int4-core") -> list[LayerFold]:
    """The folds of every synaptic layer of a QSNN, in order (conv..., fc).

    Raises:
        TargetError: as :func:`freeze`, for weights the target cannot hold or a bad input scale.
    """
    target = load_target(target)
    cfg = model.config
    if cfg.encoding != STATIC and cfg.input_divisor != 1.0:
        raise TargetError("frame inputs must be integer event counts (input_divisor 1)")
    # the float model divides by input_divisor (torchvision ToTensor: x / 255); the integer
    # layer multiplies its sum by the same real number 1/255, of which x / 255 in float32
    # is the correctly rounded value
    quantum = cfg.input_quantum
    x_max = float(target.input.max)
    folds = []
    for i, conv in enumerate(model.convs):
        name = f"conv{i + 1}"
        w, s = quantized_weights(conv, name, target)
        bn = model.bns[i] if model.bns is not None else None
        a, b = _affine(bn, s * quantum / 4.0, w.shape[0])
        w = _flip_negative(w, a, name)
        a_max = float(weight_gain(w)) * x_max * 4  # the 2x2 sum pool after the conv
        folds.append(LayerFold(name, w, s, quantum, np.abs(a), b, a_max))
        x_max, quantum = 1.0, 1.0  # later layers see 0/1 spikes
    w, s = quantized_weights(model.fc, "fc", target)
    a, b = _affine(None, s * quantum, w.shape[0])
    if model.fc.bias is not None:  # the reference's float fc1: I = a A + bias, b is the bias itself
        b = model.fc.bias.detach().double().cpu().numpy()
    folds.append(LayerFold("fc", w, s, quantum, a, b, float(weight_gain(w)) * x_max))
    return folds


def spiking_layers(model: Any, target: TargetProfile, fraction_bits: int | None = None) -> list[tuple[LayerFold, LIF, dict[str, Any]]]:
    """(fold, integer LIF node, metadata) of every spiking layer, in order: what :func:`freeze` assembles."""
    return [_spiking(model, i, fold, fraction_bits, target, f"lif{i + 1}") for i, fold in enumerate(layer_folds(model, target))]


def _flip_negative(w: np.ndarray, a: np.ndarray, name: str) -> np.ndarray:
    """Negate the weights of channels with a negative scale (so every a_c > 0)."""
    if (a == 0).any():
        raise TargetError(f"layer {name!r}: channel(s) {np.flatnonzero(a == 0)[:5].tolist()} have a zero BN scale")
    sign = np.where(a < 0, -1, 1).reshape(-1, *([1] * (w.ndim - 1)))
    return w * sign


def _spiking(
    model: Any, i: int, fold: LayerFold, fraction_bits: int | None, target: TargetProfile, name: str
) -> tuple[LayerFold, LIF, dict[str, Any]]:
    a, b = fold.a, fold.b
    lif = model.lifs[i]
    beta = float(lif.beta.detach().clamp(0, 1))
    theta = float(lif.threshold.detach())
    if not theta > 0:
        raise CheckpointError(f"layer {name!r}: threshold {theta} is not positive")
    frac = (
        fraction_bits if fraction_bits is not None else _fraction_bits(a, b, theta, beta, fold.a_max, model.config.timesteps, target.state)
    )
    node = _lif_node(name, a, b, theta, beta, frac, target)
    meta = {
        "beta": beta,
        "threshold": theta,
        "fraction_bits": frac,
        "scale_min": float(a.min()),
        "scale_max": float(a.max()),
        "decay_error": abs(node.decay - beta),
    }
    return fold, node, meta
