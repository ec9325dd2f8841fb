"""The QSNN of Eshraghian et al. 2022: Brevitas-quantised convs + snnTorch leaky neurons.

Architecture (reference code jeshraghian/QSNNs), per time step::

    cur_l = BN_l(avg_pool2d(conv_l(x), 2))      -> Leaky_l      (each conv layer l)
    cur_d = Linear(dropout(flatten(spikes)))    -> Leaky_d      (the dense layer)

Two forward passes share one set of parameters:

- :meth:`QSNN.forward_reference` is the paper's per-step loop over snnTorch ``Leaky``
  modules: the oracle for tests and the baseline of ``benchmarks/train_speed.py``.
- :meth:`QSNN.forward` is the fast path used for training and inference. A static image's
  first conv + pool + BN is computed once, not T times; every later layer runs over all T
  steps in one batched call, with the whole LIF recurrence in one autograd Function
  (:mod:`qsnn_deploy.training.lif_autograd`); conv + 2x2 average pooling runs as one stride-2 conv with
  the pooling folded into a 6x6 kernel (2.8x fewer MACs, the same linear map).

Inputs are raw integers (pixels 0..255, event counts); the model divides them by
``config.input_divisor`` itself, in its float type, exactly as the reference code's
torchvision ``ToTensor`` does (``x / 255``), and the integer freeze uses the same quantum.

The fast path is the same linear map computed in another order, so its float32 membranes may
differ from the per-step loop's by rounding (measured: up to 3e-5 in lif2 of the shipped
model, where the folded 6x6 kernel sums 36 products instead of 25 then 4). A spike flips only
if a membrane lies within that distance of the threshold; tests/test_reference_import.py
checks that the spikes stay identical on real images (docs/arithmetic.md, "Fast path").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from qsnn_deploy.encodings import FRAMES, STATIC
from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training import precision as prec
from qsnn_deploy.training.batch_norm_steps import batch_norm_over_steps
from qsnn_deploy.training.config import ModelConfig
from qsnn_deploy.training.lif_autograd import dropout, lif_sequence


@dataclass
class ForwardRecord:
    """Per-layer spikes and membranes, each (T, B, ...) in layer order (conv..., dense).

    Current-based models (:mod:`qsnn_deploy.training.model_dense`) also record each layer's
    synaptic current; ``synaptic`` is None for the conv QSNN.
    """

    spikes: list[torch.Tensor]
    membranes: list[torch.Tensor]
    synaptic: list[torch.Tensor] | None = None


def _make_conv(cfg: ModelConfig, cin: int, cout: int) -> nn.Module:
    if cfg.quantized:
        import brevitas.nn as qnn

        return qnn.QuantConv2d(cin, cout, cfg.kernel_size, bias=False, weight_bit_width=cfg.weight_bits)
    return nn.Conv2d(cin, cout, cfg.kernel_size, bias=False)


def make_linear(cfg: ModelConfig, fin: int, fout: int) -> nn.Module:
    if cfg.quantized:
        import brevitas.nn as qnn

        # bias_quant stays Brevitas' default (none): a float bias, as nn.Linear's
        return qnn.QuantLinear(fin, fout, bias=cfg.fc_bias, weight_bit_width=cfg.weight_bits)
    return nn.Linear(fin, fout, bias=cfg.fc_bias)


def _make_leaky(cfg: ModelConfig) -> nn.Module:
    import snntorch as snn
    from snntorch import surrogate

    return snn.Leaky(beta=cfg.beta, threshold=cfg.threshold, spike_grad=surrogate.fast_sigmoid(slope=cfg.slope))


def _laid_out_for(cur: torch.Tensor, next_is_conv: bool) -> torch.Tensor:
    """A LIF layer's current, (B or T*B..., C, H, W), in the layout its spikes' reader wants.

    The LIF writes its spikes in its current's layout (:func:`lif_sequence`): channels-last
    for a next conv, which reads them and returns their gradient in it without a
    (T, B, C, H, W) copy; the standard layout for the dense layer's flatten.
    """
    if not next_is_conv:
        return cur.contiguous()
    return cur.reshape(-1, *cur.shape[-3:]).contiguous(memory_format=torch.channels_last).view(cur.shape)


def fold_avgpool2x2(weight: torch.Tensor) -> torch.Tensor:
    """Kernel K' with conv(x, K', stride 2) == avg_pool2d(conv(x, K), 2): K' = box2x2 * K / 4."""
    padded = [F.pad(weight, (dx, 1 - dx, dy, 1 - dy)) for dy in (0, 1) for dx in (0, 1)]
    return (padded[0] + padded[1] + padded[2] + padded[3]) * 0.25


class QSNN(nn.Module):
    """Quantised spiking conv net; see the module docstring."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        chans = (config.in_channels, *config.conv_channels)
        self.convs = nn.ModuleList(_make_conv(config, a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in config.conv_channels) if config.batch_norm else None
        self.fc = make_linear(config, config.dense_in, config.num_classes)
        self.dropout = nn.Dropout(config.dropout)
        self.lifs = nn.ModuleList(_make_leaky(config) for _ in range(len(config.conv_channels) + 1))
        # qsnn_deploy.training.finetune.TargetArithmetic: run the LIF layers as a target core does (None: float)
        self.target_arithmetic: Any = None
        #: the fast forward's precision, one of config.PRECISIONS (qsnn_deploy.training.precision);
        #: the trainer sets it for the training steps only
        self.precision = "fp32"

    # -- parameters as the forward passes see them ------------------------------------
    def layer_weight(self, layer: nn.Module) -> torch.Tensor:
        """The weight the layer multiplies by: Brevitas' fake-quantised value (STE grads) or float."""
        if self.config.quantized:
            return layer.quant_weight().value
        return layer.weight

    def _scaled_input(self, x: torch.Tensor) -> torch.Tensor:
        # integer pixels/counts become the parameters' float type (float64 models run in float64)
        # division, not multiplication by 1/255: torchvision ToTensor's float32 numbers. The
        # copy in standard strides matters too: a (N, 1, H, W) array with channel stride 1
        # (as NumPy slicing makes) also reads as channels-last, for which oneDNN picks another
        # conv kernel that sums in another order (~3e-7 off, enough to flip a spike over T).
        return (x.to(self.fc.weight.dtype) / self.config.input_divisor).clone(memory_format=torch.contiguous_format)

    # -- the paper's per-step loop ------------------------------------------------------
    def forward_reference(self, x: torch.Tensor, record: bool = False, timesteps: int | None = None):
        """Per-step loop as in the reference code. ``x``: (B, C, H, W) static or (B, T, C, H, W) frames.

        Runs ``timesteps`` steps (default ``config.timesteps``). Returns output spikes
        (T, B, classes), or a :class:`ForwardRecord` if ``record``.
        """
        cfg = self.config
        steps = cfg.timesteps if timesteps is None else timesteps
        x = self._scaled_input(x)
        mems = [lif.init_leaky() for lif in self.lifs]
        n_layers = len(self.lifs)
        spk_out: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
        mem_out: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
        # Brevitas recomputes the quantised weight at every module call (~15 ms on a loaded CPU
        # here, most of a step's time); computed once, the numbers and gradients are the same
        kernels = [self.layer_weight(conv) for conv in self.convs]
        dense = self.layer_weight(self.fc)
        for t in range(steps):
            h = x[:, t] if cfg.encoding == FRAMES else x
            for i, kernel in enumerate(kernels):
                cur = F.avg_pool2d(F.conv2d(h, kernel), 2)
                if self.bns is not None:
                    cur = self.bns[i](cur)
                h, mems[i] = self.lifs[i](cur, mems[i])
                spk_out[i].append(h)
                mem_out[i].append(mems[i])
            cur = F.linear(self.dropout(h.flatten(1)), dense, self.fc.bias)
            h, mems[-1] = self.lifs[-1](cur, mems[-1])
            spk_out[-1].append(h)
            mem_out[-1].append(mems[-1])
        if record:
            return ForwardRecord([torch.stack(s) for s in spk_out], [torch.stack(m) for m in mem_out])
        return torch.stack(spk_out[-1])

    @torch.no_grad()
    def spikes(self, x: Any, timesteps: int | None = None) -> torch.Tensor:
        """Output spikes (T, N, classes) of the per-step reference loop, without gradients.

        ``x``: raw uint8 images (N, C, H, W) -- or (N, H, W) for one channel -- shown at every
        step, or event-count frames (N, T', C, H, W) with T' >= ``timesteps``; a NumPy array or
        a tensor. ``timesteps`` defaults to ``config.timesteps``. This is the reference code's
        computation (``ToTensor`` scaling, per-step conv, pool, BN, Leaky) in the model's mode.

        Raises:
            QsnnError: ``x`` has the wrong shape for the model, or too few frames.
        """
        cfg = self.config
        steps = cfg.timesteps if timesteps is None else int(timesteps)
        x = torch.as_tensor(x)
        given = tuple(x.shape)
        if cfg.encoding == STATIC and x.dim() == 3 and cfg.in_channels == 1:
            x = x.unsqueeze(1)
        sample = (cfg.in_channels, cfg.input_size, cfg.input_size)
        frames = cfg.encoding == FRAMES
        if tuple(x.shape[2:] if frames else x.shape[1:]) != sample or x.dim() != (5 if frames else 4):
            layout = "(N, T, C, H, W) frames" if frames else "(N, C, H, W) images"
            raise QsnnError(f"input of shape {given} does not fit the model: expected {layout} with (C, H, W) = {sample}")
        if steps < 1 or (frames and x.shape[1] < steps):
            raise QsnnError(f"cannot run {steps} steps on {x.shape[1] if frames else 'static'} input frames")
        return self.forward_reference(x, timesteps=steps)

    # -- the fast path --------------------------------------------------------------------
    def _batch_norm(self, i: int, cur: torch.Tensor, repeats: int) -> torch.Tensor:
        """BN of layer ``i`` exactly as the per-step loop applies it.

        ``cur`` is (B, C, H, W) when the layer input is the same at all ``repeats`` steps,
        else (T, B, C, H, W). In training the per-step loop normalises each step with that
        step's batch statistics and moves the running statistics once per step. A static
        layer's current is normalised by torch's kernel, bit for bit the loop's; a
        time-batched one by :func:`~qsnn_deploy.training.batch_norm_steps.batch_norm_over_steps`
        in one pass (the same statistics up to float rounding; T torch calls cost ~3x more).
        """
        if self.bns is None:
            return cur
        bn = self.bns[i]

        def next_momentum() -> float:
            # counts one running-stat update; momentum None is nn.BatchNorm's cumulative average
            bn.num_batches_tracked.add_(1)
            return bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)

        @torch.no_grad()
        def move_running_statistics(mean: torch.Tensor, var: torch.Tensor) -> None:
            momentum = next_momentum()
            bn.running_mean.mul_(1.0 - momentum).add_(mean * momentum)
            bn.running_var.mul_(1.0 - momentum).add_(var * momentum)

        if not self.training:
            flat = cur.flatten(0, 1) if cur.dim() == 5 else cur
            return F.batch_norm(flat, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps).view_as(cur)
        if cur.dim() == 5:
            out, mean, var = batch_norm_over_steps(cur, bn.weight, bn.bias, bn.eps)
            for t in range(cur.shape[0]):
                move_running_statistics(mean[t].to(cur.dtype), var[t].to(cur.dtype))
            return out
        # T-1 of the T steps see the same batch: apply their identical running-stat updates
        # to the C-vectors (the kernel would recompute the same statistics). They go first
        # because autograd forbids changing the buffers after the call.
        with torch.no_grad():
            var, mean = torch.var_mean(cur, dim=(0, 2, 3), unbiased=True)
        for _ in range(repeats - 1):
            move_running_statistics(mean, var)
        return F.batch_norm(cur, bn.running_mean, bn.running_var, bn.weight, bn.bias, True, next_momentum(), bn.eps)

    def _lif(self, i: int, cur: torch.Tensor, record: bool, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        lif = self.lifs[i]
        if self.target_arithmetic is not None:
            return self.target_arithmetic.lif(i, cur, lif.beta, lif.threshold, self.config.slope, steps)
        return lif_sequence(cur, lif.beta, lif.threshold, self.config.slope, steps, membranes=record)

    def forward(self, x: torch.Tensor, record: bool = False):
        """Fast forward over all T steps; same values as :meth:`forward_reference`.

        ``x``: (B, C, H, W) static image or (B, T, C, H, W) frames, raw integers or floats.
        Returns output spikes (T, B, classes), or a :class:`ForwardRecord` if ``record``.
        With :attr:`target_arithmetic` set, the LIF layers run a target's integer arithmetic
        instead and the spikes are the integer deployment's (:mod:`qsnn_deploy.training.finetune`).
        """
        cfg = self.config
        steps = cfg.timesteps
        if self.target_arithmetic is not None:
            self.target_arithmetic.refresh(self)  # the integer parameters follow the current weights
        x = self._scaled_input(x)
        spikes: list[torch.Tensor] = []
        mems: list[torch.Tensor | None] = []
        h: torch.Tensor | None = None  # spikes (T, B, C, H, W) into the next layer
        for i, conv in enumerate(self.convs):
            w = self.layer_weight(conv)
            if i == 0 and cfg.encoding == STATIC:
                # The image is the same at every step: its current is computed once.
                cur = self._batch_norm(i, F.avg_pool2d(F.conv2d(x, w), 2), steps)
                h, mem = self._lif(i, _laid_out_for(cur, i + 1 < len(self.convs)), record, steps)
            else:
                src = x.transpose(0, 1) if h is None else h
                # channels-last: oneDNN's fastest layout for this conv here (2x on fwd+bwd)
                flat = src.reshape(-1, *src.shape[2:]).contiguous(memory_format=torch.channels_last)
                kernel = fold_avgpool2x2(w).contiguous(memory_format=torch.channels_last)
                cur = prec.conv2d(flat, kernel, 2, self.precision)  # channels-last, as its input
                cur = self._batch_norm(i, cur.view(steps, -1, *cur.shape[1:]), steps)
                h, mem = self._lif(i, _laid_out_for(cur, i + 1 < len(self.convs)), record)
            spikes.append(h)
            mems.append(mem)
        dense_in = dropout(h.flatten(2), self.config.dropout, self.training)
        cur = prec.linear(dense_in, self.layer_weight(self.fc), self.fc.bias, self.precision)
        out, mem = self._lif(len(self.convs), cur, record)
        spikes.append(out)
        mems.append(mem)
        if record:
            return ForwardRecord(spikes, mems)
        return out

    @torch.no_grad()
    def clamp_weights(self, low: float = -1.0, high: float = 1.0) -> None:
        """Weight clipping of the reference recipe (after each optimiser step)."""
        for p in self.parameters():
            p.clamp_(low, high)


def build_network(config: ModelConfig) -> nn.Module:
    """The network of ``config.kind``: the conv :class:`QSNN` or the dense current-based SNN."""
    if config.kind == "dense":
        from qsnn_deploy.training.model_dense import DenseSNN

        return DenseSNN(config)
    return QSNN(config)


def predict(spikes: torch.Tensor) -> torch.Tensor:
    """Class of the most output spikes over T; ties go to the lowest index (as in the simulator)."""
    counts = spikes.sum(0)
    # torch.argmax returns the first maximal index, which is the tie rule we document.
    return counts.argmax(dim=-1)
