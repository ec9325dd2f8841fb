"""Training precision of the fast forward: fp32 (the per-step loop's numbers) or bf16 (the big conv and the dense layer in BF16).

``fp32`` is the fast path of :mod:`qsnn_deploy.training.model`: the per-step loop's numbers
up to float32 rounding (docs/arithmetic.md, "Fast path"). ``bf16`` runs the two matrix products that dominate a step at T=100 in bfloat16:

- the time-batched conv (layer 2 of the FMNIST net, over all T*B spike maps): forward and
  the input gradient in BF16, the weight gradient in fp32 (:class:`_BF16Conv2d`). oneDNN's
  BF16 weight gradient of this conv gains little or loses here (AVX512-BF16, no AMX: 89 vs
  98 ms on a quiet machine, 2x slower under load), so it keeps fp32's precision; the forward
  is ~2x and the input gradient ~1.2x faster (docs/tune.md);
- the dense layer, under ``torch.autocast("cpu", dtype=torch.bfloat16)``: forward and both
  gradients faster in BF16.

The first conv (once per batch for a static image) gains nothing and stays fp32. BatchNorm
is the fp32 path's (:mod:`qsnn_deploy.training.batch_norm_steps`).

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
        x16, w16 = x.to(torch.bfloat16), w.to(torch.bfloat16)
        ctx.save_for_backward(x, x16, w, w16)
        ctx.stride = stride
        out = F.conv2d(x16, w16, stride=stride)
        return out.float()  # in the input's layout, as fp32's conv returns it

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, x16, w, w16 = ctx.saved_tensors
        stride, grad_x, grad_w = ctx.stride, None, None
        if ctx.needs_input_grad[0]:
            # the output gradient in the input's layout: oneDNN then returns dL/dx in it too,
            # which the LIF before this conv reads without a transposing copy
            layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
            (grad_x, _, _) = torch.ops.aten.convolution_backward(
                grad.to(torch.bfloat16, memory_format=layout), x16, w16, None, (stride,) * 2, (0, 0), (1, 1), False,
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


__all__ = ["PRECISIONS", "check_precision", "conv2d", "linear", "training_precision"]
