"""Training-mode BatchNorm of a time-batched layer: each step normalised with its own batch statistics.

The per-step loop calls ``BatchNorm2d`` once per step, so in training step t is normalised
with the mean and variance of step t over (B, H, W)::

    mean[t, c]  = sum_{b,h,w} x[t, b, c, h, w] / N                  N = B * H * W
    var[t, c]   = sum_{b,h,w} (x[t, b, c, h, w] - mean[t, c])^2 / N
    y[t, b, c, h, w] = (x - mean[t, c]) / sqrt(var[t, c] + eps) * weight[c] + bias[c]

and the running statistics move once per step with the unbiased variance var * N / (N - 1).
Backward, with x^ = (x - mean) / sqrt(var + eps) and sums over (b, h, w) of step t::

    dL/dx = weight / sqrt(var + eps) * (g - sum(g) / N - x^ * sum(g x^) / N)
    dL/dweight = sum_t sum(g x^),   dL/dbias = sum_t sum(g)

torch offers this only as T calls of its BN kernel (and ``torch.stack`` of the T outputs):
at T=100 on (128, 64, 4, 4) steps that is ~40 ms of a training step, most of it per-call
overhead and 16-element inner loops. These kernels do it in one pass over all steps,
parallel over t, reading the conv's channels-last output where it lies and writing the
standard layout the LIF and the dense layer read. Sums are accumulated in float64. The
values equal the T torch calls up to float rounding, not bit for bit (tested).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from qsnn_deploy.errors import QsnnError


@numba.njit(parallel=True, cache=True, nogil=True)
def _forward_kernel(x, weight, bias, eps, y, mean_out, var_out, invstd_out):  # pragma: no cover - compiled
    """x (T, B, S, C) channels-last, y (T, B, C, S); per step t the statistics over (B, S)."""
    steps, batch, size, chans = x.shape
    count = batch * size
    for t in numba.prange(steps):
        total = np.zeros(chans, dtype=np.float64)
        for b in range(batch):
            for s in range(size):
                row = x[t, b, s]
                for c in range(chans):
                    total[c] += row[c]
        mean = total / count
        squares = np.zeros(chans, dtype=np.float64)
        for b in range(batch):
            for s in range(size):
                row = x[t, b, s]
                for c in range(chans):
                    d = row[c] - mean[c]
                    squares[c] += d * d
        var = squares / count
        invstd = 1.0 / np.sqrt(var + eps)
        scale = invstd * weight
        block = np.empty((size, chans), dtype=x.dtype)
        for b in range(batch):
            for s in range(size):
                row = x[t, b, s]
                out = block[s]
                for c in range(chans):
                    out[c] = (row[c] - mean[c]) * scale[c] + bias[c]  # float64: no cancellation of x*a against b
            y[t, b] = block.T
        mean_out[t] = mean
        var_out[t] = var
        invstd_out[t] = invstd


@numba.njit(cache=True, nogil=True)
def _transpose_into(src, dst):  # pragma: no cover - compiled
    """dst (S, C) = src (C, S), with a type cast (Numba's slice assignment mishandles that case)."""
    for c in range(src.shape[0]):
        for s in range(src.shape[1]):
            dst[s, c] = src[c, s]


@numba.njit(parallel=True, cache=True, nogil=True)
def _backward_kernel(g, x, mean, invstd, weight, grad_x, sum_g, sum_gx):  # pragma: no cover - compiled
    """g (T, B, C, S) standard, x and grad_x (T, B, S, C) channels-last; sum_g, sum_gx (T, C)."""
    steps, batch, size, chans = x.shape
    count = batch * size
    for t in numba.prange(steps):
        m, inv = mean[t], invstd[t]
        total = np.zeros(chans, dtype=np.float64)
        total_x = np.zeros(chans, dtype=np.float64)
        block = np.empty((size, chans), dtype=np.float64)
        for b in range(batch):
            _transpose_into(g[t, b], block)
            for s in range(size):
                row, grow = x[t, b, s], block[s]
                for c in range(chans):
                    total[c] += grow[c]
                    total_x[c] += grow[c] * (row[c] - m[c]) * inv[c]
        k = weight * inv
        mean_g, mean_gx = total / count, total_x / count
        for b in range(batch):
            _transpose_into(g[t, b], block)
            for s in range(size):
                row, grow, out = x[t, b, s], block[s], grad_x[t, b, s]
                for c in range(chans):
                    xhat = (row[c] - m[c]) * inv[c]
                    out[c] = k[c] * (grow[c] - mean_g[c] - xhat * mean_gx[c])
        sum_g[t] = total
        sum_gx[t] = total_x


class _BatchNormOverSteps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cur, weight, bias, eps: float):  # type: ignore[override]
        steps, batch, chans, height, width = cur.shape
        flat = cur.detach().reshape(steps * batch, chans, height, width).contiguous(memory_format=torch.channels_last)
        x = flat.permute(0, 2, 3, 1).reshape(steps, batch, height * width, chans)  # a view: (T, B, S, C)
        y = torch.empty((steps, batch, chans, height * width), dtype=cur.dtype)
        mean = torch.empty((steps, chans), dtype=torch.float64)
        var, invstd = torch.empty_like(mean), torch.empty_like(mean)
        w64, b64 = weight.detach().double().numpy(), bias.detach().double().numpy()
        _forward_kernel(x.numpy(), w64, b64, float(eps), y.numpy(), mean.numpy(), var.numpy(), invstd.numpy())
        ctx.save_for_backward(x, mean, invstd, weight)
        ctx.shape = tuple(cur.shape)
        count = batch * height * width
        ctx.mark_non_differentiable(mean, var)
        return y.view(cur.shape), mean, var * (count / (count - 1))

    @staticmethod
    def backward(ctx, grad_y, _grad_mean, _grad_var):  # type: ignore[override]
        x, mean, invstd, weight = ctx.saved_tensors
        steps, batch, chans, height, width = ctx.shape
        g = grad_y.contiguous().view(steps, batch, chans, height * width).to(x.dtype)
        grad_x = torch.empty((steps * batch, height, width, chans), dtype=x.dtype)
        sum_g = torch.empty((steps, chans), dtype=torch.float64)
        sum_gx = torch.empty_like(sum_g)
        w64 = weight.detach().double().numpy()
        _backward_kernel(
            g.numpy(), x.numpy(), mean.numpy(), invstd.numpy(), w64, grad_x.view(x.shape).numpy(), sum_g.numpy(), sum_gx.numpy()
        )
        # dL/dx in the channels-last layout of the conv output it flows back into
        grad_cur = grad_x.permute(0, 3, 1, 2).reshape(ctx.shape)
        dtype = weight.dtype
        return grad_cur, sum_gx.sum(0).to(dtype), sum_g.sum(0).to(dtype), None


def batch_norm_over_steps(
    cur: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training-mode BN of (T, B, C, H, W) ``cur``, each step with its own statistics.

    Returns (y, mean, unbiased variance): y (T, B, C, H, W) in the standard layout, the
    statistics (T, C) in float64 for the caller's running-statistic updates (one per step).
    Gradients flow to ``cur``, ``weight`` and ``bias``.

    Raises:
        QsnnError: a step has one value per channel (B * H * W == 1), which has no variance.
    """
    if cur.dim() != 5 or cur.shape[1] * cur.shape[3] * cur.shape[4] < 2:
        raise QsnnError(f"BatchNorm over steps needs (T, B, C, H, W) with more than one value per channel and step, got {tuple(cur.shape)}")
    return _BatchNormOverSteps.apply(cur, weight, bias, float(eps))
