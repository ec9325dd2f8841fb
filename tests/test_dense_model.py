"""The dense current-based SNN (model kind "dense", preset fmnist-rows-xylo): build, semantics, training, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import write_idx_folder

from qsnn_deploy.app.cli import cli
from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.checkpoint import build_model, load_checkpoint
from qsnn_deploy.training.config import ModelConfig, get_preset
from qsnn_deploy.training.model import build_network
from qsnn_deploy.training.model_dense import DenseSNN

XYLO_IMU_HIDDEN = 496  # rockpool's Xylo IMU mapper: at most 496 hidden neurons


def _small_config(**changes) -> ModelConfig:
    base = dict(kind="dense", in_channels=16, hidden=(12, 8), num_classes=10, timesteps=28, input_kind="events")
    base.update(weight_bits=8, alpha=0.75, beta=0.875, threshold=1.0, input_scale=1 / 15, batch_norm=False, dropout=0.0)
    base.update(changes)
    return ModelConfig(**base)


def _documented_forward(model: DenseSNN, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The equations of model_dense's docstring, step by step: (spikes, synaptic, membrane) per layer."""
    cfg = model.config
    h = x.double().transpose(0, 1) * cfg.input_scale
    layers = []
    for i, fc in enumerate(model.fcs):
        w = fc.quant_weight().value.detach().double()
        if i > 0:  # one hop: spikes of step t arrive at step t + 1
            h = torch.cat([torch.zeros_like(h[:1]), h[:-1]])
        syn = mem = torch.zeros(h.shape[1], w.shape[0], dtype=torch.float64)
        cap = cfg.hidden_max_spikes if i < len(cfg.hidden) else 1
        out = []
        for t in range(h.shape[0]):
            syn = cfg.alpha * syn + h[t] @ w.T
            mem = cfg.beta * mem + syn
            spk = torch.zeros_like(mem)
            while True:  # Xylo: spike while V >= theta, up to the cap
                fire = (mem >= cfg.threshold) & (spk < cap)
                if not fire.any():
                    break
                spk += fire
                mem = mem - cfg.threshold * fire
            out.append((spk, syn, mem))
        layers.append(tuple(torch.stack(v) for v in zip(*out)))
        h = layers[-1][0]
    return layers


def test_preset_fits_xylo_imu_and_uses_shift_decays() -> None:
    cfg = get_preset("fmnist-rows-xylo").model
    assert cfg.kind == "dense" and cfg.weight_bits == 8 and cfg.in_channels == 16 and cfg.num_classes == 10
    assert sum(cfg.hidden) <= XYLO_IMU_HIDDEN and cfg.timesteps == 28
    for decay in (cfg.alpha, cfg.beta):
        dash = -np.log2(1.0 - decay)
        assert dash == round(dash) and 1 <= dash <= 15, f"{decay} is not 1 - 2^-dash"
    model = build_network(cfg)
    assert isinstance(model, DenseSNN)
    assert [tuple(fc.weight.shape) for fc in model.fcs] == [(cfg.hidden[0], 16), (10, cfg.hidden[0])]
    assert int(model.fcs[0].quant_weight().bit_width) == 8


def test_forward_follows_the_documented_equations_and_hop_delay() -> None:
    torch.manual_seed(0)
    model = DenseSNN(_small_config()).eval()
    with torch.no_grad():
        for fc in model.fcs:
            fc.weight.uniform_(-0.35, 0.5)
    x = torch.randint(0, 16, (5, 28, 16), dtype=torch.uint8)
    rec = model(x, record=True)
    ref = _documented_forward(model, x)
    for i, (spk, syn, mem) in enumerate(ref):
        assert torch.equal(rec.spikes[i].double(), spk), f"layer {i} spikes differ"
        torch.testing.assert_close(rec.synaptic[i].double(), syn, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(rec.membranes[i].double(), mem, rtol=1e-5, atol=1e-5)
    assert 0.05 < rec.spikes[0].mean() and rec.spikes[1].mean() > 0.01, "layers must be active to test anything"
    assert rec.spikes[0].max() > 1 and rec.spikes[-1].max() == 1, "hidden neurons must fire several times a step, outputs once"
    # two hops: the output layer gets no current before step 2
    assert torch.equal(rec.synaptic[2][:2], torch.zeros_like(rec.synaptic[2][:2]))
    assert torch.equal(model(x), rec.spikes[-1])


def test_wrong_input_shape_is_named() -> None:
    model = DenseSNN(_small_config())
    with pytest.raises(QsnnError, match=r"\(batch, 28 steps, 16 channels\)"):
        model(torch.zeros(2, 12, 16))
    with pytest.raises(QsnnError, match="input_kind 'events'"):
        _small_config(input_kind="static")


def test_train_resume_and_checkpoint_round_trip(runner, tmp_path: Path) -> None:
    data = tmp_path / "fmnist"
    write_idx_folder(data, gz=False, sizes={"train": 96, "test": 32}, seed=1)
    out = tmp_path / "run"
    args = ["train", "--preset", "fmnist-rows-xylo", "--data-dir", str(data), "--batch-size", "32", "--quiet"]
    res = runner.invoke(cli, [*args, "--out", str(out), "--epochs", "1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["train", "--out", str(out), "--epochs", "2", "--resume", "--quiet"])
    assert res.exit_code == 0, res.output
    for name in ("best.pt", "last.pt", "metrics.json", "accuracy.png", "train.log"):
        assert (out / name).is_file(), name
    history = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(0.0 <= h["test_acc"] <= 1.0 for h in history)
    losses = load_checkpoint(out / "last.pt").train_state["iter_loss"]
    assert len(losses) == 2 * 3 and losses[-1] != losses[0]  # 86 training images / 32 per batch = 3 steps an epoch

    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.model_config == get_preset("fmnist-rows-xylo").model and ckpt.preset == "fmnist-rows-xylo"
    model = build_model(ckpt)
    assert isinstance(model, DenseSNN) and not model.training
    twin = build_network(ckpt.model_config).eval()
    assert not torch.equal(twin.fcs[0].weight, model.fcs[0].weight)  # fresh init differs ...
    twin.load_state_dict(ckpt.state_dict)
    x = torch.randint(0, 16, (4, 28, 16), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))  # ... until the checkpoint's weights are loaded
