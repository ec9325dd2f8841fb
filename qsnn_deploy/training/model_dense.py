"""A dense current-based SNN for SynSense Xylo: Brevitas int8 weights + snnTorch ``Synaptic`` neurons.

Architecture (``ModelConfig(kind="dense")``)::

    in_channels -> hidden[0] -> ... -> hidden[-1] -> num_classes      (all Linear, no bias)

Every layer is a population of snnTorch ``Synaptic`` neurons with subtractive reset applied
in the step of the spike (``reset_delay=False``), per step ``t``::

    I[t] = alpha * I[t-1] + W x[t]
    V[t] = beta * V[t-1] + I[t]
    S[t] = (V[t] > theta);   V[t] <- V[t] - theta * S[t]

which is Xylo's neuron as far as a float model goes: with ``alpha = 1 - 2^-dash_syn`` and
``beta = 1 - 2^-dash_mem`` the decays are exactly Xylo's shift decays up to the integer
rounding (Xylo: ``x - (x >> dash)``, at least +-1), the reset is Xylo's subtraction in the same
step, and one spike per step is Xylo's output neurons' rule. Not modelled in float (the
integer fine-tuning, ``train --finetune --target xylo-imu``, sees them): Xylo's hidden neurons
fire up to 31 times in one step while ``V >= theta``, where this model fires once and keeps the
rest (snnTorch's double-reset guard then decides the next step); ``>=`` vs snnTorch's ``>``
(differs only at exact equality); int16 saturation.

Hop delays (``hop_delay=True``, the default): on Xylo the input reaches the first hidden layer
in the same step, but hidden -> hidden and hidden -> output spikes arrive one step later; the
model shifts every hidden layer's spikes by one step before the next layer, so a net with
``k`` hidden layers sees input row ``t`` at its outputs at step ``t + k``, as on the chip.

Inputs are raw event counts ``(B, T, in_channels)``; the model multiplies them by
``config.input_scale`` itself (so ``W * scale`` times an integer count is the current), and
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


def make_synaptic(cfg: ModelConfig) -> nn.Module:
    """One snnTorch ``Synaptic`` population with the config's decays, threshold and surrogate."""
    import snntorch as snn
    from snntorch import surrogate

    return snn.Synaptic(
        alpha=cfg.alpha,
        beta=cfg.beta,
        threshold=cfg.threshold,
        spike_grad=surrogate.fast_sigmoid(slope=cfg.slope),
        reset_mechanism="subtract",
        reset_delay=False,
    )


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
        self.lifs = nn.ModuleList(make_synaptic(config) for _ in self.fcs)
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
        return (x.to(self.fcs[0].weight.dtype) * cfg.input_scale).transpose(0, 1)

    def _neurons(self, i: int, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer ``i``'s neurons over all steps of ``current`` (T, B, N): (spikes, synaptic, membrane)."""
        if self.target_arithmetic is not None:
            return self.target_arithmetic.synaptic(i, current, self.lifs[i], self.config.slope)
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
        spikes, syns, mems = [], [], []
        for i, fc in enumerate(self.fcs):
            if i > 0:
                h = dropout(h, self.config.dropout, self.training)
                if self.config.hop_delay:
                    h = delay_one_step(h)
            h, syn, mem = self._neurons(i, F.linear(h, self.layer_weight(fc)))
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
