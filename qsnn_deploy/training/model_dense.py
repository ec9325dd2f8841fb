"""A dense current-based SNN for SynSense Xylo: Brevitas int8 weights + snnTorch ``Synaptic`` neurons.

Architecture (``ModelConfig(kind="dense")``)::

    in_channels -> hidden[0] -> ... -> hidden[-1] -> num_classes      (all Linear, no bias)

Every layer is a population of :class:`XyloSynaptic` neurons: snnTorch's ``Synaptic`` (its
state update, parameters and surrogate) with Xylo's spike rule, per step ``t``::

    I[t] = alpha * I[t-1] + W x[t]
    V[t] = beta * V[t-1] + I[t]
    S[t] = min(floor(V[t] / theta), cap) if V[t] >= theta else 0;   V[t] <- V[t] - theta * S[t]

with ``cap = hidden_max_spikes`` (Xylo: 31) in hidden layers and 1 in the output layer (Xylo's
output neurons fire at most once per step). A hidden neuron's ``S`` spikes count ``S`` times in
the next layer's current, as Xylo's events do. Why not snnTorch's own rule: it fires at most
once per step and, with the membrane still above threshold after a reset, fires next only
above ``2 theta``; in a trained net 6% of hidden neuron-steps end above threshold (measured on
an early checkpoint of this preset), so the float net and the chip would disagree there.

With ``alpha = 1 - 2^-dash_syn`` and ``beta = 1 - 2^-dash_mem`` the decays are Xylo's shift
decays up to the integer rounding (Xylo: ``x - (x >> dash)``, at least +-1). Not modelled in
float (the integer fine-tuning, ``train --finetune --target xylo-imu``, sees them): that
rounding, the int16 saturation of both states and the rounding of the threshold.

Gradient: the reset is detached (as snnTorch's), and dS/dV is snnTorch's fast-sigmoid
surrogate of slope ``k`` around the staircase: 1/theta (its mean slope) between theta and
``cap theta``, falling off as the fast sigmoid on either side (for ``cap`` = 1 exactly
snnTorch's ``fast_sigmoid``, over theta)::

    dS/dV = 1 / (theta (1 + k d)^2),   d = max(theta - V, 0, V - cap theta)

Hop delays (``hop_delay=True``, the default): on Xylo the input reaches the first hidden layer
in the same step, but hidden -> hidden and hidden -> output spikes arrive one step later; the
model shifts every hidden layer's spikes by one step before the next layer, so a net with
``k`` hidden layers sees input row ``t`` at its outputs at step ``t + k``, as on the chip.

Inputs are raw event counts ``(B, T, in_channels)``; the model multiplies them by
``1 / config.input_divisor`` itself (so ``W * scale`` times an integer count is the current), and
the readout is the output spike count over T, as for the conv QSNN.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.config import ModelConfig
from qsnn_deploy.training.lif_autograd import dropout
from qsnn_deploy.training.model import ForwardRecord, make_linear


def spike_surrogate(mem: torch.Tensor, threshold: torch.Tensor | float, cap: int, slope: float) -> torch.Tensor:
    """dS/dV of the module docstring at membranes ``mem`` (before the reset)."""
    distance = torch.clamp(torch.maximum(threshold - mem, mem - cap * threshold), min=0.0)
    return 1.0 / (threshold * (1.0 + slope * distance) ** 2)


class _SpikeCount(torch.autograd.Function):
    """S = min(floor(V / theta), cap) for V >= theta (else 0), with :func:`spike_surrogate` as gradient."""

    @staticmethod
    def forward(ctx, mem: torch.Tensor, threshold: torch.Tensor, cap: int, slope: float):  # type: ignore[override]
        ctx.save_for_backward(mem, threshold)
        ctx.cap, ctx.slope = cap, slope
        return torch.clamp(torch.floor(mem / threshold), 0, cap)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        mem, threshold = ctx.saved_tensors
        return grad * spike_surrogate(mem, threshold, ctx.cap, ctx.slope), None, None, None


class XyloSynaptic(nn.Module):
    """snnTorch ``Synaptic`` neurons stepping with Xylo's spike rule (module docstring).

    snnTorch's module holds the parameters (``alpha``, ``beta``, ``threshold`` buffers, so the
    checkpoint layout is snnTorch's) and its state update; only the firing and reset differ.
    """

    def __init__(self, cfg: ModelConfig, max_spikes: int):
        super().__init__()
        import snntorch as snn

        self.synaptic = snn.Synaptic(alpha=cfg.alpha, beta=cfg.beta, threshold=cfg.threshold, reset_mechanism="none")
        self.max_spikes = max_spikes
        self.slope = cfg.slope

    def forward(self, current: torch.Tensor, syn: torch.Tensor, mem: torch.Tensor):
        """One step: (spike counts, synaptic current, membrane after reset)."""
        lif = self.synaptic
        lif.syn, lif.mem = syn, mem
        syn, mem = lif._base_state_function(current)  # snnTorch: alpha * syn + I, beta * mem + syn
        spk = _SpikeCount.apply(mem, lif.threshold, self.max_spikes, self.slope)
        return spk, syn, mem - spk.detach() * lif.threshold


def delay_one_step(spikes: torch.Tensor) -> torch.Tensor:
    """``out[t] = spikes[t - 1]``, ``out[0] = 0`` for (T, B, N) spikes: one Xylo hop."""
    return F.pad(spikes, (0, 0, 0, 0, 1, 0))[:-1]


class DenseSNN(nn.Module):
    """Dense current-based SNN; see the module docstring."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.kind != "dense":
            raise QsnnError(f"DenseSNN needs a dense model config, got kind {config.kind!r}")
        self.config = config
        sizes = (config.in_channels, *config.hidden, config.num_classes)
        self.fcs = nn.ModuleList(make_linear(config, a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        caps = [config.hidden_max_spikes] * len(config.hidden) + [1]  # Xylo's output neurons fire once per step
        self.lifs = nn.ModuleList(XyloSynaptic(config, cap) for cap in caps)
        # qsnn_deploy.training.finetune.TargetArithmetic: run the neurons as a target does (None: float)
        self.target_arithmetic: Any = None

    def layer_weight(self, layer: nn.Module) -> torch.Tensor:
        """The weight the layer multiplies by: Brevitas' fake-quantised value (STE grads) or float."""
        if self.config.quantized:
            return layer.quant_weight().value
        return layer.weight

    def _layer_input(self, x: torch.Tensor) -> torch.Tensor:
        """Raw events (B, T, C) -> scaled (T, B, C) in the parameters' float type, shape checked."""
        cfg = self.config
        if x.dim() != 3 or x.shape[1] != cfg.timesteps or x.shape[2] != cfg.in_channels:
            raise QsnnError(
                f"dense model input must be (batch, {cfg.timesteps} steps, {cfg.in_channels} channels) events, got {tuple(x.shape)}"
            )
        return (x.to(self.fcs[0].weight.dtype) * (1.0 / cfg.input_divisor)).transpose(0, 1)

    def _neurons(self, i: int, current: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer ``i``'s neurons over all steps of ``current`` (T, B, N): (spikes, synaptic, membrane).

        ``counts`` (T, B, J) are the integer event counts behind ``current`` (target arithmetic runs on them).
        """
        if self.target_arithmetic is not None:
            return self.target_arithmetic.synaptic(i, current, counts, self.lifs[i])
        lif = self.lifs[i]
        syn = mem = torch.zeros_like(current[0])
        spikes, syns, mems = [], [], []
        for t in range(current.shape[0]):
            spk, syn, mem = lif(current[t], syn, mem)
            spikes.append(spk)
            syns.append(syn)
            mems.append(mem)
        return torch.stack(spikes), torch.stack(syns), torch.stack(mems)

    def forward(self, x: torch.Tensor, record: bool = False):
        """Output spikes (T, B, classes) for events ``x`` (B, T, in_channels), or a :class:`ForwardRecord`."""
        if self.target_arithmetic is not None:
            self.target_arithmetic.refresh(self)  # the integer parameters follow the current weights
        h = self._layer_input(x)
        counts = x.transpose(0, 1)  # the first layer's integer input: the raw events
        spikes, syns, mems = [], [], []
        for i, fc in enumerate(self.fcs):
            if i > 0:
                h = dropout(h, self.config.dropout, self.training)
                if self.config.hop_delay:
                    h = delay_one_step(h)
                counts = h  # later layers hear spike counts, integers
            h, syn, mem = self._neurons(i, F.linear(h, self.layer_weight(fc)), counts)
            spikes.append(h)
            syns.append(syn)
            mems.append(mem)
        if record:
            return ForwardRecord(spikes, mems, syns)
        return h

    @torch.no_grad()
    def clamp_weights(self, low: float = -1.0, high: float = 1.0) -> None:
        """Weight clipping of the reference recipe (after each optimiser step)."""
        for p in self.parameters():
            p.clamp_(low, high)
