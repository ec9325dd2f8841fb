r"""Freeze a dense current-based SNN (:mod:`qsnn_deploy.training.model_dense`) into CubaLIF layers.

The float model computes, per layer k with integer weights ``W`` (Brevitas), scale ``s`` and
input quantum ``q`` (``1 / input_divisor`` for the events, 1 for spike counts)::

    K[t] = alpha K[t-1] + a W x[t],          a = s q  (float current per integer-sum unit)
    U[t] = beta U[t-1] + K[t];   S[t] = clip(floor(U[t] / theta), 0, cap);   U[t] -= theta S[t]

Xylo (the CubaLIF node) adds the events before it decays the synaptic current, so its current is
``I[t] = alpha (I[t-1] + (W << ws) x[t])`` = ``alpha K[t] 2^ws / a`` exactly, and its membrane
``V = alpha U 2^ws / a``; the two agree spike for spike with::

    Theta = round(theta alpha 2^ws / a),  dash_syn = -log2(1 - alpha),  dash_mem = -log2(1 - beta)

up to the rounding of Theta and of the shift decays (``x - (x >> dash)`` floors, and never
decays by less than 1) and the int16 saturation of I and V. The weight shift ``ws`` is the
largest that keeps ``W << ws`` in the synaptic type (no wrap), Theta at most
``state.max / (spike_cap + 1)`` with the chip's hidden ``spike_cap`` (so a hidden neuron
firing its full cap in one step still fits the membrane; an output neuron sheds only one
Theta a step, so its membrane needs the room as much), and within the chip's
``max_weight_shift``; hidden layers 2.. share one shift
(the chip's recurrent population has one), the smallest of theirs. Bias is 0 (the model has
none). The first layer hears the input in its own step, later layers one step late
(``input_delay`` 1, the model's ``hop_delay``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from qsnn_deploy.encodings import FRAMES
from qsnn_deploy.errors import TargetError
from qsnn_deploy.frontends.torch_qat import frozen_metadata, quantized_weights
from qsnn_deploy.ir import CubaLIF, Graph, Input, IntTensor, Linear, Output
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.targets import TargetProfile, load_target

DASH_TYPE = IntType(8, signed=False)


def shift_dash(decay: float, what: str, target: TargetProfile) -> int:
    """``dash`` with ``decay = 1 - 2^-dash`` exactly, within the target's ``decay_shift``."""
    dash = -math.log2(1.0 - decay) if decay < 1.0 else math.inf
    if not (math.isfinite(dash) and dash == round(dash) and 0 <= dash <= target.decay_shift):
        raise TargetError(
            f"{what} {decay} is not a shift decay 1 - 2^-dash with dash 0..{target.decay_shift}; {target.name} decays by bit shifts only"
        )
    return int(dash)


def _weight_shift(w: np.ndarray, a: float, theta: float, alpha: float, target: TargetProfile) -> int:
    """The largest shift with no weight wrap, Theta <= state.max / (spike_cap + 1), within max_weight_shift."""
    top = int(target.limits.get("max_weight_shift", 31))
    w_max = max(int(np.abs(w).max()), 1)
    best = 0
    for ws in range(top + 1):
        fits_weights = (w_max << ws) <= target.synapse_state.max
        fits_theta = theta * alpha * 2.0**ws / a <= target.state.max / (target.spike_cap + 1)
        if not (fits_weights and fits_theta):
            break
        best = ws
    return best


def _layer_plans(model: Any, target: TargetProfile) -> list[tuple[np.ndarray, float, int, int]]:
    """(integer weights, float current per unit ``a``, spike cap, weight shift) of every layer."""
    cfg = model.config
    n_layers = len(model.fcs)
    layers = []
    for k, fc in enumerate(model.fcs):
        w, s = quantized_weights(fc, f"fc{k + 1}", target)
        a = s * ((1.0 / cfg.input_divisor) if k == 0 else 1.0)
        cap = 1 if k == n_layers - 1 else target.spike_cap
        layers.append((w, a, cap, _weight_shift(w, a, cfg.threshold, cfg.alpha, target)))
    if n_layers > 2:  # hidden layers 2.. are Xylo's recurrent population: one shift for all
        shared = min(ws for _, _, _, ws in layers[1:-1])
        layers = [(w, a, cap, shared if 0 < k < n_layers - 1 else ws) for k, (w, a, cap, ws) in enumerate(layers)]
    return layers


def _cuba_node(
    n: int, theta: int, dashes: tuple[int, int], ws: int, cap: int, *, first: bool, delayed: bool, target: TargetProfile
) -> CubaLIF:
    """One layer's CubaLIF: shared threshold and decays, no bias, the chip's caps and hop delay."""
    return CubaLIF(
        threshold=IntTensor(np.full(n, theta), target.state),
        bias=IntTensor(np.zeros(n, np.int64), target.state),
        dash_syn=IntTensor(np.full(n, dashes[0]), DASH_TYPE),
        dash_mem=IntTensor(np.full(n, dashes[1]), DASH_TYPE),
        weight_shift=ws,
        input_cap=int(target.limits.get("max_input_events", 0)) if first else target.spike_cap,
        input_delay=int(delayed),
        **{**target.arithmetic.fields(), "spike_cap": cap},
    )


def freeze_dense(model: Any, target: TargetProfile | str = "xylo-imu") -> Graph:
    """Freeze a :class:`~qsnn_deploy.training.model_dense.DenseSNN` for a Xylo target (module docstring).

    Raises:
        TargetError: the target has no current-based neuron, a decay is not a shift decay, the
            weights do not fit, or a threshold rounds below 1.
    """
    target = load_target(target)
    cfg = model.config
    if target.synapse_state is None:
        raise TargetError(f"target {target.name} has no current-based neuron (synapse_state); a dense Synaptic model needs a Xylo target")
    if cfg.hidden_max_spikes != target.spike_cap:
        raise TargetError(
            f"the model's hidden neurons fire up to {cfg.hidden_max_spikes} spikes a step, {target.name}'s {target.spike_cap}"
        )
    dashes = (shift_dash(cfg.alpha, "alpha", target), shift_dash(cfg.beta, "beta", target))
    nodes: list[tuple[str, Any]] = [("input", Input(shape=(cfg.in_channels,), dtype=target.input, encoding=FRAMES))]
    meta = []
    for k, (w, a, cap, ws) in enumerate(_layer_plans(model, target)):
        exact = cfg.threshold * cfg.alpha * 2.0**ws / a
        theta = int(round(exact))
        if theta < 1:
            raise TargetError(f"layer fc{k + 1}: the threshold rounds to {theta} at weight shift {ws} (weight scale too large)")
        node = _cuba_node(w.shape[0], theta, dashes, ws, cap, first=k == 0, delayed=cfg.hop_delay and k > 0, target=target)
        nodes += [(f"fc{k + 1}", Linear(weight=IntTensor(w, target.weight))), (f"lif{k + 1}", node)]
        error = abs(theta - exact) / exact
        meta.append({"layer": f"fc{k + 1}", "weight_scale": a, "weight_shift": ws, "threshold": theta, "threshold_error": error})
    nodes.append(("output", Output()))
    return Graph.sequential(nodes, frozen_metadata(cfg, target, meta), timesteps=cfg.timesteps)


__all__ = ["freeze_dense", "shift_dash"]
