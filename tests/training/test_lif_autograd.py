"""The LIF Function's memory handling: any layout in, the same numbers out; backward recomputes U exactly."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qsnn_deploy.training.lif_autograd import lif_sequence, surrogate_backward


def _grad(current: torch.Tensor, grad_spk: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    current = current.detach().requires_grad_(True)
    spk, _ = lif_sequence(current, *args, **kwargs)
    (g,) = torch.autograd.grad(spk, current, grad_spk)
    return g


@pytest.mark.parametrize("static", [True, False])
def test_a_channels_last_current_gives_channels_last_spikes_with_the_same_values_and_gradients(static):
    torch.manual_seed(0)
    steps, beta, thr = 9, torch.tensor(0.7), torch.tensor(1.0)
    # 5*3*7*11 = 1155 neurons per step: chunks of 256 and 2048 both end part-way
    shape = (5, 3, 7, 11) if static else (steps, 5, 3, 7, 11)
    standard = torch.randn(shape) * 1.5
    if static:
        channels_last = standard.contiguous(memory_format=torch.channels_last)
    else:
        channels_last = standard.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    assert torch.equal(standard, channels_last) and channels_last.stride() != standard.stride()
    kwargs = {"steps": steps} if static else {}
    spk_a, mem_a = lif_sequence(standard, beta, thr, 5.0, **kwargs)
    spk_b, mem_b = lif_sequence(channels_last, beta, thr, 5.0, **kwargs)
    assert torch.equal(spk_a, spk_b) and torch.equal(mem_a, mem_b)
    assert 0.05 < float(spk_a.mean()) < 0.95
    # the spikes are laid out as the current: channels innermost
    assert spk_b.stride()[-3] == 1 and spk_a.is_contiguous()
    grad = torch.randn(spk_a.shape)
    reference = _grad(standard, grad, beta, thr, 5.0, **kwargs)
    for grad_layout in (
        grad,
        grad.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3),
        grad.transpose(0, 1).contiguous().transpose(0, 1),
    ):
        got = _grad(channels_last, grad_layout, beta, thr, 5.0, **kwargs)
        assert torch.equal(got, reference)
        assert got.stride() == channels_last.stride()  # the gradient comes back in the current's layout


def test_a_current_that_is_not_dense_in_any_order_is_copied_first():
    torch.manual_seed(1)
    beta, thr = torch.tensor(0.9), torch.tensor(0.5)
    full = torch.randn(12, 4, 10)
    strided = full[::2, :, ::3]  # gaps in memory: no permutation makes it dense
    spk, mem = lif_sequence(strided, beta, thr, 3.0)
    spk_ref, mem_ref = lif_sequence(strided.contiguous(), beta, thr, 3.0)
    assert torch.equal(spk, spk_ref) and torch.equal(mem, mem_ref)
    grad = torch.randn(spk.shape)
    assert torch.equal(_grad(strided, grad, beta, thr, 3.0), _grad(strided.contiguous(), grad, beta, thr, 3.0))


@settings(max_examples=40, deadline=None)
@given(
    static=st.booleans(),
    steps=st.integers(1, 30),
    neurons=st.integers(1, 700),
    beta=st.sampled_from([0.0, 0.25, 0.9, 0.999, 1.0]),
    threshold=st.sampled_from([0.1, 1.0, 3.0]),
    slope=st.sampled_from([0.5, 5.0, 25.0]),
    scale=st.sampled_from([0.01, 1.0, 100.0]),
    seed=st.integers(0, 2**16),
)
def test_backward_recomputes_the_membranes_bit_for_bit(static, steps, neurons, beta, threshold, slope, scale, seed):
    """dL/dI from the recomputed U equals dL/dI from the U the forward recorded, exactly.

    The currents span tiny (never spiking), threshold-sized and huge (spiking every step)
    values; beta covers no leak (1) and no memory (0).
    """
    rng = np.random.default_rng(seed)
    shape = (neurons,) if static else (steps, neurons)
    current = torch.from_numpy((rng.standard_normal(shape) * scale).astype(np.float32))
    b, th = torch.tensor(beta), torch.tensor(threshold)
    kwargs = {"steps": steps} if static else {}
    spk, mem = lif_sequence(current, b, th, slope, **kwargs)
    spk_only, none = lif_sequence(current, b, th, slope, membranes=False, **kwargs)
    assert none is None and torch.equal(spk, spk_only)
    grad_spk = torch.from_numpy(rng.standard_normal(spk.shape).astype(np.float32))
    recomputed = _grad(current, grad_spk, b, th, slope, membranes=False, **kwargs)
    f32 = np.float32
    recorded = surrogate_backward(
        grad_spk, mem.reshape(steps, -1), static, f32(min(max(beta, 0.0), 1.0)), f32(threshold), f32(slope), tuple(current.shape)
    )
    assert torch.equal(recomputed, recorded)
