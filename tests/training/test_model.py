"""The fast time-batched forward equals the paper's per-step snnTorch loop."""

import numpy as np
import pytest
import snntorch as snn
import snntorch.functional as SF
import torch
from snntorch import surrogate

from qsnn_deploy.training.config import ModelConfig
from qsnn_deploy.training.lif_autograd import lif_sequence
from qsnn_deploy.training.model import QSNN, fold_avgpool2x2, predict


def _dyadic_model(cfg: ModelConfig, seed: int) -> QSNN:
    """Weights whose Brevitas scale is 2^-4, so every conv/linear sum is exact in float32.

    Then the only possible difference between the two forwards would be a real one
    (ordering of operations, state handling), not float rounding of sums.
    """
    torch.manual_seed(seed)
    model = QSNN(cfg)
    with torch.no_grad():
        for layer in [*model.convs, model.fc]:
            w = layer.weight
            w.uniform_(-0.43, 0.43)
            w.view(-1)[0] = 0.4375  # max |w| = 7 * 2^-4
        if model.bns is not None:
            for bn in model.bns:
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
    return model


def _clone(model: QSNN) -> QSNN:
    twin = QSNN(model.config)
    twin.load_state_dict(model.state_dict())
    twin.train(model.training)
    return twin


@pytest.mark.parametrize("training,momentum", [(False, 0.1), (True, 0.1), (True, None)])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_fast_forward_equals_per_step_loop(training, momentum, batch_norm):
    cfg = ModelConfig(timesteps=25, dropout=0.0, threshold=0.6, batch_norm=batch_norm)
    model = _dyadic_model(cfg, seed=1).train(training)
    twin = _clone(model)
    for bn in [*(model.bns or []), *(twin.bns or [])]:
        bn.momentum = momentum  # None: cumulative average (precise BN statistics)
    x = torch.randint(0, 256, (6, 1, 28, 28))
    ref = model.forward_reference(x, record=True)
    fast = twin.forward(x, record=True)
    for layer, (s_ref, s_fast, m_ref, m_fast) in enumerate(zip(ref.spikes, fast.spikes, ref.membranes, fast.membranes)):
        assert s_ref.shape == s_fast.shape
        assert torch.equal(s_ref, s_fast), f"layer {layer} spikes differ"
        # training-mode BN of the time-batched layer sums its statistics in another order
        # (qsnn_deploy.training.batch_norm_steps): rounding-level differences from there on
        tol = 1e-5 if training and batch_norm and layer > 0 else 1e-6
        torch.testing.assert_close(m_fast, m_ref, rtol=tol, atol=tol)
    assert 0.02 < ref.spikes[0].mean() < 0.9 and ref.spikes[1].mean() > 0.01, "test needs active layers to mean anything"
    # running statistics move as in the per-step loop (T updates per batch; the static
    # layer's T-1 repeated updates are applied to the vectors, so equal up to float rounding)
    for (name, a), (_, b) in zip(model.named_buffers(), twin.named_buffers()):
        if "running" in name:
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=name)
        if "num_batches_tracked" in name:
            assert torch.equal(a, b), name
            assert not torch.equal(a, torch.zeros_like(a)) or "mean" not in name


def test_fast_forward_close_on_random_weights():
    """Non-dyadic weights: sums round differently (folded pooling), spikes still agree."""
    cfg = ModelConfig(timesteps=20, dropout=0.0)
    torch.manual_seed(3)
    model = QSNN(cfg).eval()
    x = torch.randint(0, 256, (8, 1, 28, 28))
    with torch.no_grad():
        ref = model.forward_reference(x, record=True)
        fast = model.forward(x, record=True)
    for s_ref, s_fast in zip(ref.spikes, fast.spikes):
        assert (s_ref == s_fast).float().mean() > 0.999
    torch.testing.assert_close(fast.membranes[0], ref.membranes[0])


def test_gradients_agree():
    cfg = ModelConfig(timesteps=15, dropout=0.0, threshold=0.6)
    model = _dyadic_model(cfg, seed=2).train()
    twin = _clone(model)
    x = torch.randint(0, 256, (6, 1, 28, 28))
    y = torch.arange(6) % 10
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    loss_ref = loss_fn(model.forward_reference(x), y)
    loss_fast = loss_fn(twin(x), y)
    assert loss_ref.item() == loss_fast.item()
    loss_ref.backward()
    loss_fast.backward()
    for (name, p_ref), (_, p_fast) in zip(model.named_parameters(), twin.named_parameters()):
        assert p_ref.grad is not None and p_ref.grad.abs().sum() > 0, name
        torch.testing.assert_close(p_fast.grad, p_ref.grad, rtol=1e-4, atol=1e-5 * p_ref.grad.abs().max().item())


def test_lif_sequence_matches_snntorch_leaky_and_its_gradient():
    torch.manual_seed(0)
    steps, beta, thr, slope = 30, 0.9, 1.0, 5.0
    cur = (torch.randn(steps, 4, 7) * 0.8).requires_grad_(True)
    leaky = snn.Leaky(beta=beta, threshold=thr, spike_grad=surrogate.fast_sigmoid(slope=slope))
    mem = leaky.init_leaky()
    spk_ref, mem_ref = [], []
    for t in range(steps):
        s, mem = leaky(cur[t], mem)
        spk_ref.append(s)
        mem_ref.append(mem)
    spk_ref, mem_ref = torch.stack(spk_ref), torch.stack(mem_ref)
    spk, mem_fast = lif_sequence(cur, leaky.beta, leaky.threshold, slope)
    assert torch.equal(spk, spk_ref) and torch.equal(mem_fast, mem_ref)
    weights = torch.randn_like(spk)
    (g_ref,) = torch.autograd.grad((spk_ref * weights).sum(), cur)
    (g_fast,) = torch.autograd.grad((spk * weights).sum(), cur)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-5, atol=1e-6)


def test_static_lif_equals_repeated_current():
    torch.manual_seed(1)
    cur = (torch.rand(3, 5) * 2).requires_grad_(True)
    beta, thr = torch.tensor(0.8), torch.tensor(1.0)
    spk_s, mem_s = lif_sequence(cur, beta, thr, 4.0, steps=12)
    spk_r, mem_r = lif_sequence(cur.unsqueeze(0).expand(12, 3, 5), beta, thr, 4.0)
    assert torch.equal(spk_s, spk_r) and torch.equal(mem_s, mem_r)
    w = torch.randn(12, 3, 5)
    (g_s,) = torch.autograd.grad((spk_s * w).sum(), cur)
    (g_r,) = torch.autograd.grad((spk_r * w).sum(), cur)
    torch.testing.assert_close(g_s, g_r)


def test_fold_avgpool_kernel_is_the_same_linear_map():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    w = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    a = torch.nn.functional.avg_pool2d(torch.nn.functional.conv2d(x, w), 2)
    b = torch.nn.functional.conv2d(x, fold_avgpool2x2(w), stride=2)
    torch.testing.assert_close(a, b)


def test_frames_input_matches_per_step_loop():
    cfg = ModelConfig(
        in_channels=2,
        input_size=32,
        conv_channels=(16, 32),
        num_classes=11,
        batch_norm=False,
        dropout=0.0,
        threshold=0.6,
        timesteps=12,
        encoding="frames",
        input_divisor=1.0,
    )
    model = _dyadic_model(cfg, seed=4).eval()
    x = torch.randint(0, 3, (3, 12, 2, 32, 32))
    with torch.no_grad():
        ref = model.forward_reference(x, record=True)
        fast = model.forward(x, record=True)
    for s_ref, s_fast in zip(ref.spikes, fast.spikes):
        assert torch.equal(s_ref, s_fast)


def test_dropout_rate_scale_gradient_and_reproducibility():
    from qsnn_deploy.training.lif_autograd import dropout

    x = torch.ones(50, 64, 256, requires_grad=True)
    torch.manual_seed(7)
    y = dropout(x, 0.25, True)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.25) < 0.01
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.75))
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0)  # the backward regenerates the same mask
    torch.manual_seed(7)
    assert torch.equal(dropout(x.detach(), 0.25, True), y.detach())
    assert dropout(x, 0.25, False) is x


def test_predict_breaks_ties_towards_lowest_index():
    spikes = torch.zeros(4, 2, 3)
    spikes[:, 0, 1] = 1
    spikes[:, 0, 2] = 1
    assert predict(spikes).tolist() == [1, 0]
    assert np.argmax(np.array([0, 3, 3])) == 1  # the simulator's rule is NumPy's, the same


@pytest.mark.parametrize(("kind", "encoding"), [("static", "static"), ("frames", "frames"), ("events", "frames")])
def test_checkpoints_saved_with_input_kind_load_as_its_encoding(kind: str, encoding: str) -> None:
    dense = dict(kind="dense", in_channels=16, hidden=(8,), num_classes=10, timesteps=28) if kind == "events" else {}
    cfg = ModelConfig.from_dict({**dense, "input_kind": kind})
    assert cfg.encoding == encoding and "input_kind" not in cfg.to_dict() and cfg.to_dict()["encoding"] == encoding


def test_a_bad_legacy_input_kind_is_a_checkpoint_error() -> None:
    from qsnn_deploy.errors import CheckpointError

    with pytest.raises(CheckpointError, match="bad input_kind 'video'"):
        ModelConfig.from_dict({"input_kind": "video"})
