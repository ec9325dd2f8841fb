"""Training BN over all steps at once equals T calls of torch's BatchNorm, one per step."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.batch_norm_steps import batch_norm_over_steps


def _torch_per_step(cur, weight, bias, eps):
    """The per-step loop's BN: one torch call per step, in float64 so rounding does not decide."""
    return torch.stack([F.batch_norm(c, None, None, weight, bias, True, 0.0, eps) for c in cur])


@settings(max_examples=30, deadline=None)
@given(
    steps=st.integers(1, 6),
    batch=st.integers(1, 5),
    chans=st.integers(1, 9),
    height=st.integers(1, 4),
    width=st.integers(1, 4),
    offset=st.sampled_from([0.0, 3.0, 1e3]),
    spread=st.sampled_from([1e-3, 1.0, 50.0]),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_values_statistics_and_gradients_equal_the_per_step_calls(steps, batch, chans, height, width, offset, spread, channels_last, seed):
    if batch * height * width < 2:
        return  # no variance: refused (test below)
    rng = np.random.default_rng(seed)
    x64 = torch.from_numpy(rng.standard_normal((steps, batch, chans, height, width)) * spread + offset)
    w64 = torch.from_numpy(rng.uniform(0.2, 2.0, chans))
    b64 = torch.from_numpy(rng.uniform(-1.0, 1.0, chans))
    g64 = torch.from_numpy(rng.standard_normal(x64.shape))
    x = x64.float()
    if channels_last:  # the conv's output layout
        x = x.reshape(-1, chans, height, width).contiguous(memory_format=torch.channels_last).view(x.shape)
    x.requires_grad_(True)
    w, b = w64.float().requires_grad_(True), b64.float().requires_grad_(True)
    y, mean, var = batch_norm_over_steps(x, w, b, 1e-5)
    assert y.is_contiguous() and y.dtype == torch.float32
    # the reference reads a standard-layout copy: torch's own BN backward is wrong for some
    # channels-last tensors with size-1 dims (found by this test: B=1, H=1)
    ref_in = (x.detach().double().contiguous().requires_grad_(True), w64.clone().requires_grad_(True), b64.clone().requires_grad_(True))
    ref = _torch_per_step(*ref_in, 1e-5)
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean, x.detach().double().mean(dim=(1, 3, 4)), rtol=1e-9, atol=1e-9 * (1 + offset))
    torch.testing.assert_close(var, x.detach().double().var(dim=(1, 3, 4), unbiased=True), rtol=1e-6, atol=1e-12)
    got = torch.autograd.grad(y, (x, w, b), g64.float())
    expected = torch.autograd.grad(ref, ref_in, g64)
    for name, a, e in zip(("x", "weight", "bias"), got, expected):
        scale = float(e.abs().max()) + 1e-6
        torch.testing.assert_close(a.double(), e, rtol=1e-4, atol=1e-4 * scale, msg=name)


def test_the_input_gradient_comes_back_channels_last():
    x = torch.randn(3 * 4, 5, 2, 2).contiguous(memory_format=torch.channels_last).view(3, 4, 5, 2, 2).requires_grad_(True)
    y, _, _ = batch_norm_over_steps(x, torch.ones(5), torch.zeros(5), 1e-5)
    (g,) = torch.autograd.grad(y, x, torch.randn(y.shape))
    assert g.reshape(12, 5, 2, 2).is_contiguous(memory_format=torch.channels_last)


def test_one_value_per_channel_is_refused():
    with pytest.raises(QsnnError, match="more than one value per channel"):
        batch_norm_over_steps(torch.randn(3, 1, 4, 1, 1), torch.ones(4), torch.zeros(4), 1e-5)
