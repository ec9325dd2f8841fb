r"""Target-aware fine-tuning of the dense current-based SNN: Xylo's integer neuron in the forward pass.

With :class:`CubaTargetArithmetic` attached to a :class:`~qsnn_deploy.training.model_dense.DenseSNN`,
every layer is frozen for the target (:func:`~qsnn_deploy.frontends.torch_dense.freeze_dense`,
re-done from the current weights at each forward pass) and stepped by the simulator's own
function :func:`qsnn_deploy.sim.lif.cuba_step` on the layer's integer input counts (the events,
or the previous layer's integer spike counts after the hop delay): shift decays, int16
saturation of current and membrane, per-event saturation order, spike caps. The forward pass
is therefore the simulator's run of the frozen graph (tested), and the loss the chip's loss.

Backward is straight-through: the float neuron's recurrence (:mod:`~qsnn_deploy.training.model_dense`,
reset detached) with its surrogate (:func:`~qsnn_deploy.training.model_dense.spike_surrogate`) evaluated at the integer membrane in float units,
``U = V a / (alpha 2^ws)`` (the freeze's scale), ignoring the roundings and saturations::

    dL/dU[t] = dL/dS[t] dS/dV(U[t]) + beta dL/dU[t+1]
    dL/dI[t] = dL/dU[t] + alpha dL/dI[t+1]           (I: the layer's float current W x)

The integer conv path (:mod:`qsnn_deploy.training.finetune`) cannot serve here: it recovers an
integer synaptic sum from the float current, but Xylo saturates the synaptic current after
every single event, so the neuron needs the events themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qsnn_deploy.errors import QsnnError
from qsnn_deploy.sim import lif as int_lif
from qsnn_deploy.targets import TargetProfile, load_target
from qsnn_deploy.training.model_dense import spike_surrogate


class CubaTargetArithmetic:
    """Makes a DenseSNN's forward pass run its layers in a Xylo target's integer arithmetic.

    Attach with ``model.target_arithmetic = CubaTargetArithmetic("xylo-imu")``; detach with None.
    """

    def __init__(self, target: TargetProfile | str = "xylo-imu"):
        self.target = load_target(target)
        self.params: list[int_lif.CubaParams] = []
        self.units: list[float] = []  # float membrane per integer membrane unit, per layer

    def refresh(self, model: Any) -> None:
        """Re-freeze the model's current weights into the integer layers."""
        from qsnn_deploy.frontends.torch_dense import freeze_dense
        from qsnn_deploy.sim.cuba_chain import cuba_layers

        with torch.no_grad():
            graph = freeze_dense(model, self.target)
        cfg = model.config
        self.params = [int_lif.CubaParams.from_nodes(linear, node, name) for name, linear, node in cuba_layers(graph)]
        self.units = [m["weight_scale"] / (cfg.alpha * 2.0 ** m["weight_shift"]) for m in graph.metadata["layers"]]

    def synaptic(self, i: int, current: torch.Tensor, counts: torch.Tensor, neuron: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer ``i`` over all steps: (spike counts, synaptic current, membrane before reset), float units, (T, B, C).

        ``current`` (T, B, C) is the float model's current of the layer (the gradient's path),
        ``counts`` (T, B, J) the integer event counts it came from (the forward's input).
        """
        syn = neuron.synaptic
        consts = (float(syn.alpha), float(syn.beta), float(syn.threshold), neuron.slope, neuron.max_spikes)
        return _CubaSequence.apply(current, counts, self.params[i], self.units[i], consts)


def _integer_run(counts: np.ndarray, p: int_lif.CubaParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S[t], I[t] and V'[t] (membrane before the reset), (T, B, C) float64, of the integer layer."""
    steps, batch = counts.shape[:2]
    if (counts != np.rint(counts)).any() or counts.min() < 0:
        raise QsnnError(f"layer {p.name!r}: target arithmetic needs integer event counts as input (no dropout, integer events)")
    state = int_lif.cuba_initial_state(batch, len(p.threshold))
    out = np.empty((3, steps, batch, len(p.threshold)), np.float64)
    x = counts.astype(np.int64)
    for t in range(steps):
        s, state = int_lif.cuba_step(x[t], state, p)
        out[0, t], out[1, t], out[2, t] = s, state.i, state.v + s * p.threshold
    return out[0], out[1], out[2]


class _CubaSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, counts, p: int_lif.CubaParams, unit: float, consts: tuple):  # type: ignore[override]
        spikes, syn, mem = _integer_run(counts.detach().to(torch.float64).numpy(), p)
        dtype = current.dtype
        mem_f = torch.from_numpy(mem * unit).to(dtype)
        ctx.save_for_backward(mem_f)
        ctx.consts = consts
        syn_f, mem_after = (
            torch.from_numpy(syn * unit).to(dtype),
            torch.from_numpy((mem - spikes * p.threshold[None, None]) * unit).to(dtype),
        )
        ctx.mark_non_differentiable(syn_f, mem_after)
        return torch.from_numpy(spikes).to(dtype), syn_f, mem_after

    @staticmethod
    def backward(ctx, grad_spk, _grad_syn, _grad_mem):  # type: ignore[override]
        (mem,) = ctx.saved_tensors
        alpha, beta, theta, slope, cap = ctx.consts
        if grad_spk is None:
            return None, None, None, None, None
        surrogate = spike_surrogate(mem, theta, cap, slope)
        grad_u = torch.zeros_like(mem[0])
        grad_i = torch.zeros_like(mem[0])
        grad_cur = torch.empty_like(mem)
        for t in range(mem.shape[0] - 1, -1, -1):
            grad_u = grad_spk[t] * surrogate[t] + beta * grad_u
            grad_i = grad_u + alpha * grad_i
            grad_cur[t] = grad_i
        return grad_cur, None, None, None, None


def target_arithmetic_for(model: Any, target: TargetProfile | str) -> Any:
    """The target-arithmetic hook of the model's kind: CubaLIF for dense models, the integer LIF otherwise."""
    if model.config.kind == "dense":
        return CubaTargetArithmetic(target)
    from qsnn_deploy.training.finetune import TargetArithmetic

    return TargetArithmetic(target)


__all__ = ["CubaTargetArithmetic", "target_arithmetic_for"]
