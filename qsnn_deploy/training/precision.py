"""Training precision of the fast forward: fp32 (exact) or bf16 (the big conv and the dense layer in BF16).

``fp32`` is the fast path of :mod:`qsnn_deploy.training.model`, spike for spike the per-step
loop's. ``bf16`` runs the two matrix products that dominate a step at T=100 in bfloat16:

- the time-batched conv (layer 2 of the FMNIST net, over all T*B spike maps): forward and
  the input gradient in BF16, the weight gradient in fp32 (:class:`_BF16Conv2d`). Measured
  here (AVX512-BF16, no AMX), oneDNN's BF16 weight gradient of this conv is ~2x *slower*
  than fp32's, while its forward and input gradient are 1.7x and 1.2x faster (docs/tune.md);
- the dense layer, under ``torch.autocast("cpu", dtype=torch.bfloat16)``: forward and both
  gradients faster in BF16.

The first conv (once per batch for a static image) gains nothing and stays fp32. The
time-batched layer's BatchNorm runs as one call over all steps (:func:`batch_norm_over_steps`)
instead of T calls: the same statistics, summed in another order, so not bit-exact either.

What stays fp32, and why:

- **the LIF recursion**: every current is cast back to fp32 before the neuron. A membrane adds
  ~100 currents; in BF16 (8-bit mantissa, a relative step of 2^-8) its rounding error would
  grow with every step to a sizeable share of the threshold, and every membrane that then
  sits on the other side of the threshold flips a spike and everything downstream of it;
- **BatchNorm** statistics, the **loss**, the **optimiser** and its master weights: the
  parameters, their gradients and Adam's moments are fp32; only the operands and results of
  the two products are rounded to BF16 (oneDNN sums in fp32 and rounds each result once);
- **weight quantisation**: Brevitas fake-quantises the fp32 weight exactly as in an fp32
  run (``QSNN.layer_weight``), and only then is the quantised (and pool-folded) weight cast
  to BF16, which moves each value by at most 2^-9 of itself; the grid itself is unchanged.

Spikes (0/1) are exact in BF16, so the conv over spikes rounds only the weights and the sum.
Checkpoints hold the fp32 parameters: freezing and deployment do not depend on the precision
a model was trained in. Evaluation (validation, test, early stopping) runs in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.config import PRECISIONS, check_precision


class _BF16Conv2d(torch.autograd.Function):
    """conv2d(x, w, stride) with the forward and dL/dx in BF16, dL/dw in fp32; fp32 in and out."""

    @staticmethod
    def forward(ctx, x, w, stride: int):  # type: ignore[override]
        ctx.save_for_backward(x, w)
        ctx.stride = stride
        out = F.conv2d(x.to(torch.bfloat16), w.to(torch.bfloat16), stride=stride)
        return out.to(torch.float32, memory_format=torch.contiguous_format)  # one pass: type and layout

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, w = ctx.saved_tensors
        stride, grad_x, grad_w = ctx.stride, None, None
        if ctx.needs_input_grad[0]:
            (grad_x, _, _) = torch.ops.aten.convolution_backward(
                grad.to(torch.bfloat16), x.to(torch.bfloat16), w.to(torch.bfloat16), None, (stride,) * 2, (0, 0), (1, 1), False,
                (0, 0), 1, (True, False, False),
            )  # fmt: skip
            grad_x = grad_x.float()
        if ctx.needs_input_grad[1]:
            (_, grad_w, _) = torch.ops.aten.convolution_backward(
                grad, x, w, None, (stride,) * 2, (0, 0), (1, 1), False, (0, 0), 1, (False, True, False)
            )
        return grad_x, grad_w, None


def conv2d(x: torch.Tensor, w: torch.Tensor, stride: int, precision: str) -> torch.Tensor:
    """The time-batched conv in ``precision``; fp32 (or the model's float64) output either way."""
    if precision == "bf16" and x.dtype == torch.float32:
        return _BF16Conv2d.apply(x, w, stride)
    return F.conv2d(x, w, stride=stride)


def linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, precision: str) -> torch.Tensor:
    """The dense layer's current in ``precision`` (autocast), returned in the input's float type."""
    if precision == "bf16" and x.dtype == torch.float32:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = F.linear(x, w, bias)
        return out.float()
    return F.linear(x, w, bias)


def batch_norm_over_steps(bn: torch.nn.BatchNorm2d, cur: torch.Tensor) -> torch.Tensor:
    """Training-mode BN of (T, B, C, H, W) currents with each step's own batch statistics, in one call.

    The per-step loop normalises step t with the mean and variance of step t and moves the
    running statistics T times; this does the same arithmetic as one BatchNorm over T*C
    channels (step-major), then applies the T running-statistic updates to the C-vectors.
    One kernel call instead of T (and no stacking of T outputs), but a different summation
    order: equal to the per-step loop up to float rounding, so the ``bf16`` path uses it and
    the exact ``fp32`` path keeps the per-step calls.
    """
    steps, batch, chans = cur.shape[:3]
    with torch.no_grad():
        var, mean = torch.var_mean(cur, dim=(1, 3, 4), unbiased=True)
        for t in range(steps):
            bn.num_batches_tracked.add_(1)
            momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.mul_(1.0 - momentum).add_(mean[t] * momentum)
            bn.running_var.mul_(1.0 - momentum).add_(var[t] * momentum)
    by_step = cur.transpose(0, 1).reshape(batch, steps * chans, *cur.shape[3:])
    out = F.batch_norm(by_step, None, None, bn.weight.repeat(steps), bn.bias.repeat(steps), True, 0.0, bn.eps)
    return out.view(batch, steps, *cur.shape[2:]).transpose(0, 1)


@contextlib.contextmanager
def training_precision(model: Any, precision: str) -> Iterator[None]:
    """Run ``model``'s forward in ``precision`` inside the block, fp32 again after it.

    Raises:
        QsnnError: an unknown precision, or a non-fp32 one for a model without a BF16 path.
    """
    check_precision(precision)
    if precision != "fp32" and not hasattr(model, "precision"):
        raise QsnnError(f"precision {precision} is implemented for the conv QSNN only, not for {type(model).__name__}")
    if not hasattr(model, "precision"):
        yield
        return
    before = model.precision
    model.precision = precision
    try:
        yield
    finally:
        model.precision = before


__all__ = ["PRECISIONS", "batch_norm_over_steps", "check_precision", "conv2d", "linear", "training_precision"]
