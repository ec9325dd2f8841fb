"""Training precision: the bf16 path runs its products in bfloat16, fp32 stays exact, runs record it."""

import json

import pytest
import snntorch.functional as SF
import torch
import torch.nn.functional as F

from qsnn_deploy.app.cli import cli
from qsnn_deploy.app.commands.train import train as train_command
from qsnn_deploy.app.commands.tune import tune as tune_command
from qsnn_deploy.errors import QsnnError
from qsnn_deploy.frontends.torch_qat import freeze
from qsnn_deploy.training import precision as prec
from qsnn_deploy.training.checkpoint import build_model, load_checkpoint
from qsnn_deploy.training.config import PRECISIONS, ModelConfig, TrainConfig, get_preset, override
from qsnn_deploy.training.model import QSNN
from qsnn_deploy.training.trainer import train
from qsnn_deploy.training.tune import _check_settings, study_settings
from qsnn_deploy.training.tune_space import SEARCH_SPACE

CFG = ModelConfig(timesteps=12, dropout=0.0, threshold=0.6)
SMALL = ["--data", "synthetic", "--timesteps", "8", "--batch-size", "64", "--limit-train", "320", "--limit-test", "128", "--quiet"]


def _model(seed: int = 0, cfg: ModelConfig = CFG) -> QSNN:
    torch.manual_seed(seed)
    model = QSNN(cfg).train()
    with torch.no_grad():
        for bn in model.bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.4)
    return model


def _images(n: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed))


def _twin(model: QSNN) -> QSNN:
    twin = QSNN(model.config)
    twin.load_state_dict(model.state_dict())
    return twin.train(model.training)


def test_bf16_runs_the_batched_conv_and_the_dense_layer_in_bfloat16(monkeypatch):
    seen = []
    conv, linear = F.conv2d, F.linear

    def conv_spy(x, w, *args, **kwargs):
        seen.append(("conv", x.dtype, w.dtype))
        return conv(x, w, *args, **kwargs)

    def linear_spy(x, w, *args, **kwargs):
        out = linear(x, w, *args, **kwargs)
        seen.append(("linear", w.dtype, out.dtype))  # autocast casts inside the op
        return out

    monkeypatch.setattr(F, "conv2d", conv_spy)
    monkeypatch.setattr(F, "linear", linear_spy)
    model = _model()
    with prec.training_precision(model, "bf16"):
        rec = model(_images(), record=True)
    assert model.precision == "fp32"  # restored after the block
    # conv 1 (once per batch) stays fp32; the time-batched conv 2 and the dense layer are bf16
    assert seen == [
        ("conv", torch.float32, torch.float32),
        ("conv", torch.bfloat16, torch.bfloat16),
        ("linear", torch.float32, torch.bfloat16),
    ]
    # the LIF layers and what they return stay fp32
    assert all(m.dtype == torch.float32 for m in rec.membranes) and all(s.dtype == torch.float32 for s in rec.spikes)
    seen.clear()
    model(_images())
    assert [s[1] for s in seen] == [torch.float32, torch.float32, torch.float32] and seen[2][2] == torch.float32


def test_fp32_is_the_default_and_unchanged_bit_for_bit():
    """fp32 (the default, inside or outside training_precision) is the per-step loop, spike and gradient."""
    assert TrainConfig().precision == "fp32" and QSNN(CFG).precision == "fp32"
    model = _model(2)
    ref, fast, inside = _twin(model), _twin(model), _twin(model)
    x, y = _images(6, 3), torch.arange(6) % 10
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    loss_ref = loss_fn(ref.forward_reference(x), y)
    loss_fast = loss_fn(fast(x), y)
    with prec.training_precision(inside, "fp32"):
        loss_inside = loss_fn(inside(x), y)
    assert loss_ref.item() == loss_fast.item() == loss_inside.item()
    for loss in (loss_ref, loss_fast, loss_inside):
        loss.backward()
    for (name, p_fast), (_, p_inside) in zip(fast.named_parameters(), inside.named_parameters()):
        assert torch.equal(p_fast.grad, p_inside.grad), name
    for (name, a), (_, b) in zip(fast.named_buffers(), inside.named_buffers()):
        assert torch.equal(a, b), name


def test_bf16_spikes_and_gradients_stay_close_to_fp32():
    model = _model(4)
    bf16 = _twin(model)
    x, y = _images(16, 5), torch.arange(16) % 10
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    rec32 = model(x, record=True)
    with prec.training_precision(bf16, "bf16"):
        rec16 = bf16(x, record=True)
    assert not torch.equal(rec32.membranes[1], rec16.membranes[1])  # bf16 really rounded something
    for s32, s16 in zip(rec32.spikes, rec16.spikes):
        assert (s32 == s16).float().mean() > 0.95
    loss_fn(rec32.spikes[-1], y).backward()
    loss_fn(rec16.spikes[-1], y).backward()
    for (name, p32), (_, p16) in zip(model.named_parameters(), bf16.named_parameters()):
        cos = F.cosine_similarity(p32.grad.flatten(), p16.grad.flatten(), dim=0)
        assert cos > 0.9, (name, cos)


def test_bf16_conv_weight_gradient_is_fp32_input_gradient_bf16():
    torch.manual_seed(0)
    x = (torch.rand(32, 4, 12, 12) < 0.3).float().requires_grad_(True)
    w = (torch.randn(8, 4, 6, 6) * 0.1).requires_grad_(True)
    out = prec.conv2d(x, w, 2, "bf16")
    assert out.dtype == torch.float32
    grad = torch.randn_like(out)
    gx, gw = torch.autograd.grad(out, (x, w), grad)
    ex, ew = torch.autograd.grad(F.conv2d(x, w, stride=2), (x, w), grad)
    torch.testing.assert_close(gw, ew, rtol=1e-5, atol=1e-5)  # computed in fp32 from fp32 operands
    torch.testing.assert_close(gx, ex, rtol=0.05, atol=0.02 * ex.abs().max().item())
    assert not torch.equal(gx, ex)  # ... and the input gradient was not
    torch.testing.assert_close(out, F.conv2d(x, w, stride=2), rtol=0.02, atol=0.01)


def test_bf16_run_trains_records_its_precision_resumes_and_freezes(tmp_path):
    cfg = override(get_preset("fmnist-int4").model, timesteps=8)
    tcfg = TrainConfig(dataset="synthetic", epochs=3, batch_size=32, precision="bf16")
    result = train(cfg, tcfg, tmp_path / "run", limit_train=320, limit_test=64, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] and result.best_val_acc > 0.3  # 10 classes: chance is 0.1
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best.train_config.precision == "bf16"
    assert all(v.dtype in (torch.float32, torch.int64) for v in best.state_dict.values())  # fp32 master weights
    # --resume keeps the run's precision, whatever the caller passes
    train(cfg, override(tcfg, epochs=4, precision="fp32"), tmp_path / "run", resume=True, progress=False)
    assert load_checkpoint(tmp_path / "run" / "last.pt").train_config.precision == "bf16"
    # the freeze reads the fp32 parameters only: a bf16-set model freezes to the same graph
    model = build_model(best)
    graph = json.dumps(freeze(model, "int4-core").to_dict(), sort_keys=True, default=str)
    model.precision = "bf16"
    assert json.dumps(freeze(model, "int4-core").to_dict(), sort_keys=True, default=str) == graph
    assert len(json.loads(graph)["nodes"]) >= 3


def test_bf16_is_refused_where_it_does_not_apply(tmp_path):
    with pytest.raises(QsnnError, match="precision"):
        TrainConfig(precision="fp16")
    dense = get_preset("fmnist-rows-xylo")
    with pytest.raises(QsnnError, match="conv QSNN only"):
        train(dense.model, override(dense.train, dataset="synthetic", epochs=1, precision="bf16"), tmp_path / "d", limit_train=64)
    assert not (tmp_path / "d").exists()
    fmnist = get_preset("fmnist-int4")
    with pytest.raises(QsnnError, match="fine-tune"):
        train(fmnist.model, override(fmnist.train, dataset="synthetic", precision="bf16"), tmp_path / "f", target="int4-core")


def test_cli_precision_choices_come_from_the_registry(runner, tmp_path):
    for command in (train_command, tune_command):
        (option,) = [p for p in command.params if p.name == "precision"]
        assert tuple(option.type.choices) == PRECISIONS
    res = runner.invoke(cli, ["train", "--out", str(tmp_path / "r"), "--precision", "fp8", *SMALL])
    assert res.exit_code == 2 and "'fp8' is not one of 'fp32', 'bf16'" in res.output
    res = runner.invoke(cli, ["train", "--out", str(tmp_path / "r"), "--epochs", "1", "--precision", "bf16", *SMALL])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "r" / "last.pt").train_config.precision == "bf16"
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())[0]["epoch"] == 1


class _Study:
    study_name = "s"

    def __init__(self, settings):
        self.user_attrs = {"settings": settings}


def test_tune_workers_share_the_precision():
    kwargs = dict(epochs_per_trial=1, limit_train=None, data=None, timesteps=None, target=None, space=SEARCH_SPACE)
    fp32, bf16 = study_settings("fmnist-int4", **kwargs), study_settings("fmnist-int4", precision="bf16", **kwargs)
    assert fp32["precision"] == "fp32" and bf16["precision"] == "bf16"
    with pytest.raises(QsnnError, match="precision: study 'fp32', this worker 'bf16'"):
        _check_settings(_Study(fp32), bf16)
    old = {k: v for k, v in fp32.items() if k != "precision"}  # a study begun before the setting existed
    _check_settings(_Study(old), fp32)
    with pytest.raises(QsnnError, match="precision"):
        study_settings("fmnist-int4", precision="fp16", **kwargs)


def test_tune_trains_its_trials_in_the_study_precision(runner, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    tiny = ["--epochs-per-trial", "1", "--limit-train", "40", "--limit-test", "16", "--data", "synthetic", "--timesteps", "2", "--quiet"]
    res = runner.invoke(
        cli,
        [
            "tune",
            "--study",
            "s",
            "--storage",
            url,
            "--trials",
            "1",
            "--precision",
            "bf16",
            *tiny,
            "--report",
            "--report-dir",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "r" / "best_config.json").read_text())
    assert config["train"]["precision"] == "bf16"  # the best config trains as its trial did
    res = runner.invoke(cli, ["tune", "--study", "s", "--storage", url, "--trials", "2", *tiny])
    assert res.exit_code == 1 and "precision: study 'bf16', this worker 'fp32'" in res.output
