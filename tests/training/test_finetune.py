"""Target-aware fine-tuning: the forward pass is the integer deployment, and gradients flow through it."""

import json

import numpy as np
import pytest
import snntorch.functional as SF
import torch

from qsnn_deploy.app.cli import cli
from qsnn_deploy.errors import QsnnError
from qsnn_deploy.frontends.torch_qat import freeze
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.sim import simulate
from qsnn_deploy.targets import load_target
from qsnn_deploy.training.checkpoint import load_checkpoint
from qsnn_deploy.training.config import ModelConfig
from qsnn_deploy.training.finetune import TargetArithmetic
from qsnn_deploy.training.model import QSNN

INT4 = load_target("int4-core")
#: a narrow core: 16-bit state, coarse floor decay; saturates on layer 1
NARROW = INT4.with_changes(name="narrow-core", state=IntType(16), decay_shift=8, rounding="floor")
SMALL = ["--data", "synthetic", "--timesteps", "12", "--batch-size", "64", "--limit-train", "320", "--limit-test", "128", "--quiet"]


def _model(seed: int, timesteps: int = 20) -> QSNN:
    torch.manual_seed(seed)
    model = QSNN(ModelConfig(timesteps=timesteps, threshold=1.0, beta=0.9))
    with torch.no_grad():
        for bn in model.bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.weight[::3] *= -1  # negative BN gains flip channels in the fold
            bn.bias.uniform_(-0.3, 0.6)
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.002, 0.02)
    return model.eval()


def _images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, 1, 28, 28)) ** 2 * 256).astype(np.uint8)


@pytest.mark.parametrize("target", [INT4, NARROW], ids=["int4-core", "narrow-16bit"])
def test_forward_in_target_arithmetic_is_the_simulation(target):
    model = _model(0)
    x = _images(24, 0)
    sim = simulate(freeze(model, target), x, model.config.timesteps, record=True, target=target)
    model.target_arithmetic = TargetArithmetic(target)
    with torch.no_grad():
        rec = model(torch.from_numpy(x), record=True)
    for i, name in enumerate(("lif1", "lif2", "lif3")):
        ours = rec.spikes[i].numpy()
        assert ours.sum() > 0, f"{name} is silent; the test needs spikes"
        np.testing.assert_array_equal(ours.astype(np.uint8).reshape(sim.spikes[name].shape), sim.spikes[name], err_msg=name)
    if target is NARROW:
        assert sum(layer.saturations for layer in sim.layers) > 0, "the narrow target should saturate"
    # and the float forward differs from it somewhere, so the check above is not vacuous
    model.target_arithmetic = None
    with torch.no_grad():
        float_rec = model(torch.from_numpy(x), record=True)
    assert any(not torch.equal(a, b) for a, b in zip(float_rec.spikes, rec.spikes))


def test_straight_through_gradients_reach_every_parameter():
    model = _model(1)
    model.target_arithmetic = TargetArithmetic(NARROW)
    x = torch.from_numpy(_images(16, 1))
    y = torch.arange(16) % 10
    loss = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)(model(x), y)
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad and p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    grads = {name: p.grad for name, p in model.named_parameters() if "weight" in name and p.grad is not None}
    assert any(g.abs().sum() > 0 for n, g in grads.items() if n.startswith("convs.0")), grads.keys()
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0


def test_training_mode_batch_norm_is_refused():
    model = _model(2).train()  # batch statistics: the current is no longer a * A + b
    model.target_arithmetic = TargetArithmetic(INT4)
    with pytest.raises(QsnnError, match="eval-mode BatchNorm"):
        with torch.no_grad():
            model(torch.from_numpy(_images(8, 2)))


def test_finetuning_lowers_the_deployed_loss_on_a_batch():
    model = _model(3)
    model.target_arithmetic = TargetArithmetic(NARROW)
    x = torch.from_numpy(_images(32, 3))
    y = torch.arange(32) % 10
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    losses = []
    for _ in range(15):
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = loss_fn(model(x), y).item()
    assert final < 0.6 * losses[0], losses + [final]
    # the integer deployment of the fine-tuned model is what the forward pass computed
    sim = simulate(freeze(model, NARROW), x.numpy(), model.config.timesteps, target=NARROW)
    with torch.no_grad():
        counts = model(x).sum(0).numpy()
    np.testing.assert_array_equal(counts.astype(np.int64), sim.counts)


def test_finetune_cli_starts_from_the_model_and_resumes(runner, tmp_path):
    base, ft = tmp_path / "base", tmp_path / "ft"
    assert runner.invoke(cli, ["train", "--out", str(base), "--epochs", "1", *SMALL]).exit_code == 0
    res = runner.invoke(
        cli, ["train", "--finetune", str(base / "best.pt"), "--target", "int4-core", "--out", str(ft), "--epochs", "1", *SMALL]
    )
    assert res.exit_code == 0, res.output
    history = json.loads((ft / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert history[0]["train_acc"] is None and history[0]["val_acc"] > 0.5  # epoch 0: the starting model, in integers
    last = load_checkpoint(ft / "last.pt")
    assert last.train_state["target"]["name"] == "int4-core"
    assert last.train_config.lr == pytest.approx(load_checkpoint(base / "best.pt").train_config.lr / 100)
    assert last.train_config.schedule == "cosine" and last.train_config.cosine_period_epochs == 1
    assert load_checkpoint(ft / "best.pt").metrics["target"] == "int4-core"
    res = runner.invoke(cli, ["train", "--out", str(ft), "--epochs", "2", "--resume", "--quiet"])
    assert res.exit_code == 0, res.output
    assert [h["epoch"] for h in json.loads((ft / "metrics.json").read_text())] == [0, 1, 2]
    assert "int4-core" in (ft / "train.log").read_text()


def test_target_without_finetune_is_a_usage_error(runner, tmp_path):
    res = runner.invoke(cli, ["train", "--out", str(tmp_path / "r"), "--target", "int4-core", *SMALL])
    assert res.exit_code == 2 and "--finetune" in res.output
