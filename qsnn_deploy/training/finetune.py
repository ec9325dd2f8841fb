r"""Target-aware fine-tuning: the target's integer LIF arithmetic inside the training forward pass.

Freeze (:mod:`qsnn_deploy.frontends.torch_qat`) writes each spiking layer's float current as
``I = a_c A + b_c`` with ``A`` the integer synaptic sum, and runs the integer neuron

    V[t] = ovf(D(V[t-1]) + (A[t] << F) + B_c - S[t-1] Theta_c),   S[t] = V[t] > Theta_c

on the target. With :class:`TargetArithmetic` attached to a :class:`~qsnn_deploy.training.model.QSNN`,
every LIF layer of the fast forward recovers ``A = round((I - b_c) / a_c)`` from its float
current, steps the target's neuron with the simulator's own function
(:func:`qsnn_deploy.sim.lif.step`: fixed-point decay, integer threshold and bias, saturation)
and hands the integer spikes to the next layer. The forward pass is therefore the integer
deployment: its output spikes equal the simulator's on the frozen graph (tested), and the
loss is the deployed network's loss.

Backward is straight-through: the float LIF's surrogate gradient (:mod:`qsnn_deploy.training.lif_autograd`)
with dU/dI = 1 and decay beta, ignoring the rounding of A, D, Theta, B and the saturation,
evaluated at the integer membrane expressed in float units relative to its own threshold::

    U[t] = theta + (V[t] - Theta_c) a_c / 2^F

The fold uses BatchNorm's running statistics, so the model runs in eval mode (no dropout,
frozen BN statistics) while it is fine-tuned; the integer parameters (F, Theta, B) are
re-derived from the current weights at every forward pass. snnTorch, Brevitas and the
vendors' tools have no such mode: their QAT stops at the float LIF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qsnn_deploy.errors import QsnnError
from qsnn_deploy.sim import lif as int_lif
from qsnn_deploy.sim.driver import run_steps
from qsnn_deploy.targets import TargetProfile, load_target
from qsnn_deploy.training.lif_autograd import surrogate_backward

# |A - round(A)| above this means the current is not a*A + b for integer A: BN in training mode,
# active dropout, or an input that is not integer. float32 rounding leaves far less: on the
# shipped Fashion-MNIST model (128 test images) at most 0.012 in layer 1 (|A| up to 54,433),
# 3e-4 in layer 2, 1e-5 in the dense layer.
_MAX_RESIDUAL = 0.25


@dataclass(frozen=True)
class TargetLayer:
    """One spiking layer as the target runs it: its fold (a_c, b_c) and integer LIF parameters."""

    params: int_lif.LIFParams
    a: np.ndarray  # (C,) float64, > 0
    b: np.ndarray  # (C,) float64


class TargetArithmetic:
    """Makes a QSNN's forward pass run the LIF layers in a target's integer arithmetic.

    Attach with ``model.target_arithmetic = TargetArithmetic("int4-core")``; detach with None.
    """

    def __init__(self, target: TargetProfile | str = "int4-core"):
        self.target = load_target(target)
        self.layers: list[TargetLayer] = []

    def refresh(self, model: Any) -> None:
        """Re-derive every layer's integer parameters from the model's current weights."""
        from qsnn_deploy.frontends.torch_qat import spiking_layers

        with torch.no_grad():
            self.layers = [
                TargetLayer(int_lif.LIFParams.from_node(node, f"lif{i + 1}"), fold.a, fold.b)
                for i, (fold, node, _) in enumerate(spiking_layers(model, self.target))
            ]

    def lif(
        self, i: int, current: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, slope: float, steps: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``i``'s LIF over all steps in target arithmetic; same contract as :func:`~qsnn_deploy.training.lif_autograd.lif_sequence`.

        Returns (spikes, U) where U is the float-unit membrane of the module docstring.
        """
        static = steps is not None
        n_steps = int(steps) if static else current.shape[0]
        return _TargetLIFSequence.apply(current, n_steps, static, self.layers[i], beta, threshold, float(slope))


def _integer_lif(
    sums: np.ndarray, static: bool, steps: int, p: int_lif.LIFParams, per_step: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """S[t] and V[t], (steps, *per_step) float64, of the target's neuron on integer sums ``sums`` (float64)."""
    from qsnn_deploy.sim import fast_kernels
    from qsnn_deploy.sim.fast_plan import float_lif_exact

    bound = float(np.abs(sums).max()) if sums.size else 0.0
    if fast_kernels.available() and float_lif_exact(p, bound):
        # the simulator's own Numba kernel: one pass per neuron instead of ~15 NumPy passes per step
        rows = 1 if static else steps
        inner = int(np.prod(per_step[2:])) if len(per_step) > 2 else 1
        spk, v = fast_kernels.scan_recorded(sums.reshape(rows, -1), static, steps, p, per_step[1], inner)
        return spk.reshape(steps, *per_step), v.reshape(steps, *per_step)
    spk = np.empty((steps, *per_step), np.float64)
    v_all = np.empty((steps, *per_step), np.float64)

    def record(t: int, s: np.ndarray, state: int_lif.LIFState) -> None:
        spk[t] = s
        v_all[t] = state.v

    run_steps(int_lif.step, sums.astype(np.int64), int_lif.initial_state(per_step), p, steps, static=static, sink=record)
    return spk, v_all


class _TargetLIFSequence(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        current,
        steps: int,
        static: bool,
        layer: TargetLayer,
        beta: torch.Tensor,
        threshold: torch.Tensor,  # type: ignore[override]
        slope: float,
    ):
        dtype = current.dtype
        per_step = tuple(current.shape if static else current.shape[1:])  # (B, C, ...)
        chan = (1, -1) + (1,) * (len(per_step) - 2)
        a = torch.from_numpy(layer.a).view(chan)
        # torch's in-place ops: one float64 copy, multithreaded, no NumPy temporaries per step
        sums = current.detach().to(torch.float64).sub_(torch.from_numpy(layer.b).view(chan)).div_(a)
        off = sums - sums.round()
        sums.sub_(off)
        residual = float(off.abs_().max()) if sums.numel() else 0.0
        del off
        if residual > _MAX_RESIDUAL:
            raise QsnnError(
                f"layer {layer.params.name!r}: the current is not a whole number of integer-sum units (off by up to {residual:.3g}); "
                "target arithmetic needs eval-mode BatchNorm and no dropout"
            )
        p = layer.params
        spk, v_all = _integer_lif(sums.numpy(), static, steps, p, per_step)
        theta = float(threshold.item())
        mem = torch.from_numpy(v_all).sub_(torch.from_numpy(p.threshold.astype(np.float64)).view(chan))
        mem = mem.mul_(a / 2.0**p.input_shift).add_(theta).to(dtype).view(steps, -1)  # V - Theta in units of the current
        np_dtype = mem.numpy().dtype.type
        ctx.save_for_backward(mem)
        ctx.params = (static, np_dtype(beta.clamp(0, 1).item()), np_dtype(theta), np_dtype(slope), tuple(current.shape))
        ctx.set_materialize_grads(False)
        out_shape = (steps, *per_step)
        mem = mem.view(out_shape)
        ctx.mark_non_differentiable(mem)
        return torch.from_numpy(spk).to(dtype).view(out_shape), mem

    @staticmethod
    def backward(ctx, grad_spk, _grad_mem):  # type: ignore[override]
        (mem,) = ctx.saved_tensors
        if grad_spk is None:
            return None, None, None, None, None, None, None
        return surrogate_backward(grad_spk, mem, *ctx.params), None, None, None, None, None, None
