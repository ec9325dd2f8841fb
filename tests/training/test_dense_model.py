"""The dense current-based SNN (model kind "dense", preset fmnist-rows-xylo): build, semantics, training, checkpoints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import snntorch.functional as SF
import torch
from idx_files import write_idx_folder

from qsnn_deploy.app.cli import cli
from qsnn_deploy.errors import QsnnError, TargetError
from qsnn_deploy.frontends.torch_qat import freeze
from qsnn_deploy.sim import cuba_chain
from qsnn_deploy.targets import load_target
from qsnn_deploy.targets.checks import check_graph
from qsnn_deploy.training.checkpoint import build_model, load_checkpoint
from qsnn_deploy.training.config import ModelConfig, get_preset
from qsnn_deploy.training.finetune_dense import CubaTargetArithmetic
from qsnn_deploy.training.model import build_network
from qsnn_deploy.training.model_dense import DenseSNN

XYLO_IMU_HIDDEN = 496  # rockpool's Xylo IMU mapper: at most 496 hidden neurons


def _small_config(**changes) -> ModelConfig:
    base = dict(kind="dense", in_channels=16, hidden=(12, 8), num_classes=10, timesteps=28, encoding="frames")
    base.update(weight_bits=8, alpha=0.75, beta=0.875, threshold=1.0, input_divisor=15.0, batch_norm=False, dropout=0.0)
    base.update(changes)
    return ModelConfig(**base)


def _documented_forward(model: DenseSNN, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The equations of model_dense's docstring, step by step: (spikes, synaptic, membrane) per layer."""
    cfg = model.config
    h = x.double().transpose(0, 1) * (1.0 / cfg.input_divisor)
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
    with pytest.raises(QsnnError, match="encoding 'frames'"):
        _small_config(encoding="static")


def test_train_resume_and_checkpoint_round_trip(runner, tmp_path: Path) -> None:
    data = tmp_path / "fmnist"
    write_idx_folder(data, gz=False, sizes={"train": 96, "test": 32}, seed=1)
    out = tmp_path / "run"
    args = ["train", "--preset", "fmnist-rows-xylo", "--data-dir", str(data), "--batch-size", "32", "--quiet"]
    res = runner.invoke(cli, [*args, "--out", str(out), "--epochs", "1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["train", "--out", str(out), "--epochs", "2", "--resume", "--data-dir", str(data), "--quiet"])
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

    # fine-tuning through Xylo IMU's integer neuron: epoch 0 is the model as the chip runs it
    ft = tmp_path / "ft"
    res = runner.invoke(
        cli,
        [
            "train",
            "--finetune",
            str(out / "last.pt"),
            "--target",
            "xylo-imu",
            "--epochs",
            "1",
            "--data-dir",
            str(data),
            "--out",
            str(ft),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    history = json.loads((ft / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert load_checkpoint(ft / "best.pt").metrics["target"] == "xylo-imu"


# ----------------------------------------------------------------------------- freeze into Xylo's CubaLIF layers


def _preset_model(seed: int, hidden: tuple[int, ...] | None = None) -> DenseSNN:
    cfg = get_preset("fmnist-rows-xylo").model
    if hidden is not None:
        cfg = dataclasses.replace(cfg, hidden=hidden)
    torch.manual_seed(seed)
    model = DenseSNN(cfg).eval()
    with torch.no_grad():  # ranges that keep every layer active without saturating it at every step
        for k, fc in enumerate(model.fcs):
            low, high = (-0.3, 0.5) if k == 0 else ((-0.15, 0.15) if k == len(model.fcs) - 1 else (-0.3, 0.3))
            fc.weight.uniform_(low, high)
    return model


@pytest.mark.parametrize("hidden", [None, (24, 16)])
def test_freeze_runs_the_float_models_spikes_in_xylo_arithmetic(hidden) -> None:
    """Frozen for xylo-imu, our CubaLIF simulator fires as the float model does, up to the integer rounding."""
    model = _preset_model(seed=2, hidden=hidden)
    graph = freeze(model, "xylo-imu")
    layers = cuba_chain.cuba_layers(graph)
    assert len(layers) == len(model.fcs)
    cfg = model.config
    for k, (_, linear, node) in enumerate(layers):
        assert node.dash_syn.values.tolist() == [2] * node.dash_syn.shape[0]  # alpha = 1 - 2^-2
        assert node.dash_mem.values.tolist() == [round(-np.log2(1 - cfg.beta))] * node.dash_mem.shape[0]
        assert node.input_delay == (0 if k == 0 else 1) and node.spike_cap == (1 if k == len(layers) - 1 else 31)
        assert np.abs(linear.weight.values).max() << node.weight_shift <= 32767  # no int16 wrap of the shifted weights
    check_graph(graph, load_target("xylo-imu"))  # fits the chip: no limit violated
    float_only = (model.fcs[0].quant_weight().value.detach().numpy() / model.fcs[0].quant_weight().scale.item()).round()
    np.testing.assert_array_equal(layers[0][1].weight.values, float_only)  # the integer weights are Brevitas'
    x = np.random.default_rng(0).integers(0, 16, size=(8, 28, 16))
    with torch.no_grad():
        rec = model(torch.from_numpy(x), record=True)
    run = cuba_chain.run(graph, x, 28, record=True)
    for k, name in enumerate(run.spikes):
        float_spikes, int_spikes = rec.spikes[k].numpy(), run.spikes[name]
        assert float_spikes.mean() > 0.1, "layers must be active to test anything"
        # the roundings of Theta and of the shift decays, and int16 saturation, move a few spikes
        # (measured: 98.5% / 99.96% equal with one hidden layer, 97% / 90% / 99% with two)
        assert (float_spikes == int_spikes).mean() > 0.88, f"{name}: float and integer spikes part ways"
    assert (rec.spikes[-1].sum(0).argmax(-1).numpy() == run.output_counts.argmax(-1)).mean() >= 0.75


def test_finetune_forward_is_the_simulator_and_has_gradients() -> None:
    """With CubaTargetArithmetic the model's forward pass is our simulator's run of the frozen graph, bit for bit."""
    model = _preset_model(seed=4, hidden=(24, 16))
    x = np.random.default_rng(1).integers(0, 16, size=(6, 28, 16))
    run = cuba_chain.run(freeze(model, "xylo-imu"), x, 28, record=True)
    model.target_arithmetic = CubaTargetArithmetic("xylo-imu")
    rec = model(torch.from_numpy(x), record=True)
    for k, name in enumerate(run.spikes):
        np.testing.assert_array_equal(rec.spikes[k].detach().numpy(), run.spikes[name])
    loss = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)(rec.spikes[-1], torch.arange(6))
    loss.backward()
    for fc in model.fcs:
        assert torch.isfinite(fc.weight.grad).all() and fc.weight.grad.abs().sum() > 0


def test_freeze_refuses_what_xylo_cannot_compute() -> None:
    model = _preset_model(seed=3)
    with pytest.raises(TargetError, match=r"output layer .lif2. has neurons 10 > limit 8 \(excess 2\)"):
        check_graph(freeze(model, "xylo-audio2"), load_target("xylo-audio2"))
    model.config = dataclasses.replace(model.config, beta=0.9)
    with pytest.raises(TargetError, match="beta 0.9 is not a shift decay"):
        freeze(model, "xylo-imu")
    with pytest.raises(TargetError, match="no current-based neuron"):
        freeze(_preset_model(seed=3), "int4-core")


def test_parity_reports_every_cubalif_layer() -> None:
    from qsnn_deploy.app.parity import run_parity

    model = _preset_model(seed=5)
    x = np.random.default_rng(2).integers(0, 16, size=(6, 28, 16)).astype(np.uint8)
    report = run_parity(model, freeze(model, "xylo-imu"), x, np.arange(6, dtype=np.int64), target=load_target("xylo-imu"), progress=False)
    assert [lp.name for lp in report.layers] == ["lif1", "lif2"]
    assert all(lp.spikes_float > 0 and lp.equal_neuron_steps / lp.neuron_steps > 0.88 for lp in report.layers)
