"""sg-cvx on a conv QSNN: the readout refit on the integer graph's features, its checkpoint, freeze and deployment."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from qsnn_deploy.data.loaders import load_split, train_val_split
from qsnn_deploy.errors import GraphError, TargetError
from qsnn_deploy.sim.simulator import simulate

STRICT = "-std=c99 -Wall -Wextra -Werror -O2"
FEATURES = 8 * 4 * 4  # lif2 of the tiny model: 8 channels of 4 x 4


@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory):
    """A tiny conv model (T = 4, 4 and 8 channels, a low threshold so lif2 spikes) as a run's checkpoint on synthetic data."""
    from qsnn_deploy.training.checkpoint import Checkpoint, model_state, save_checkpoint
    from qsnn_deploy.training.config import ModelConfig, TrainConfig
    from qsnn_deploy.training.model import QSNN

    torch.manual_seed(0)
    cfg = ModelConfig(timesteps=4, conv_channels=(4, 8), threshold=0.2)
    tc = TrainConfig(dataset="synthetic", val_fraction=0.25, seed=3)
    return save_checkpoint(Checkpoint(cfg, model_state(QSNN(cfg)), tc), tmp_path_factory.mktemp("base") / "model.pt")


@pytest.fixture(scope="module")
def refit_run(tmp_path_factory, base_ckpt):
    from qsnn_deploy.training.convex.conv import ConvRefit, refit

    out = tmp_path_factory.mktemp("sgcvx")
    run = ConvRefit(init=str(base_ckpt), strengths=3, ratio=0.05, max_iter=200, limit_train=240, limit_test=64, batch_size=64)
    return out, refit(run, out, progress=False)


def _prefix_counts(base_ckpt, x: np.ndarray) -> np.ndarray:
    """lif2's spike counts per neuron, by the reference simulator's recorded spikes on the full base graph."""
    from qsnn_deploy.app.loading import load_deployable

    graph = load_deployable(base_ckpt).graph
    res = simulate(graph, x, 4, backend="reference", record=True)
    return res.spikes["lif2"].sum(axis=0).reshape(len(x), -1).astype(np.int64)


def test_refit_model_deploys_and_simulates_its_integer_scores(refit_run, base_ckpt) -> None:
    from qsnn_deploy.app.loading import load_deployable
    from qsnn_deploy.training.convex.conv_checkpoint import load_conv_readout

    out, metrics = refit_run
    torch.load(out / "best.pt", weights_only=True)  # plain data and tensors only
    model = load_conv_readout(out / "best.pt")
    dep = load_deployable(out / "best.pt")
    assert dep.target.name == "int4-core" and dep.graph.chain()[-1][1].readout == "membrane"
    test = load_split("synthetic", "test", limit=64, seed=3)
    x = test.x.astype(np.int64)
    # independently: counts from recorded spikes, times the integer readout, + T B
    scores = (_prefix_counts(base_ckpt, x) @ model.weight.T << model.input_shift) + 4 * model.bias
    for backend in ("reference", "fast"):
        res = simulate(dep.graph, x, 4, backend=backend)
        assert np.array_equal(res.counts, scores)
        assert np.array_equal(res.predictions, np.argmax(scores, axis=1))
    assert metrics["test_acc"] == pytest.approx(float((np.argmax(scores, axis=1) == test.y).mean()))
    assert json.loads((out / "metrics.json").read_text())[-1]["test_acc"] == metrics["test_acc"]
    assert (out / "path.png").is_file() and (out / "features.npz").is_file()


def test_readout_is_picked_on_the_base_runs_validation_split(refit_run) -> None:
    out, metrics = refit_run
    full = load_split("synthetic", "train", limit=240, seed=3)
    fit, val = train_val_split(full, 0.25, 3)
    assert metrics["samples"] == {"fit": len(fit), "val": len(val), "test": 64}
    assert max(p["val_acc"] for p in metrics["path"]) == pytest.approx(metrics["val_acc"])
    with np.load(out / "features.npz") as z:
        assert z["fit"].shape == (len(fit), FEATURES) and z["fit"].max() <= 4


def test_refit_graph_exports_and_round_trips(refit_run, tmp_path) -> None:
    from qsnn_deploy.app.loading import load_deployable
    from qsnn_deploy.exporters import export
    from qsnn_deploy.exporters.json_graph import read_graph_json
    from qsnn_deploy.exporters.onnx_plain import run_onnx

    out, _ = refit_run
    dep = load_deployable(out / "best.pt")
    x = load_split("synthetic", "test", limit=6, seed=3).x.astype(np.int64)
    scores = simulate(dep.graph, x, 4).counts
    export(dep.graph, "json", tmp_path / "g.json", timesteps=4, golden=x[:3], target=dep.target)
    graph2, target, meta = read_graph_json(tmp_path / "g.json")
    assert graph2 == dep.graph and target.name == "int4-core"
    assert np.array_equal(np.stack([g["output_counts"] for g in meta["golden"]]), scores[:3])
    assert np.array_equal(run_onnx(export(dep.graph, "onnx", tmp_path / "m.onnx", timesteps=4), x, 4)[0], scores)
    _check_qonnx(export(dep.graph, "qonnx", tmp_path / "m.qonnx.onnx", timesteps=4), x[:2], scores[:2])
    import nir

    nir_graph = nir.read(export(dep.graph, "nir", tmp_path / "m.nir", timesteps=4))
    assert nir_graph.metadata["readout"] == "membrane" and "scores" in nir_graph.nodes
    export(dep.graph, "c", tmp_path / "c", timesteps=4, golden=x)  # the testbench compares the int32 membranes V[T-1]
    done = subprocess.run(["make", "-s", "-C", str(tmp_path / "c"), "test", "CC=gcc", f"CFLAGS={STRICT}"], capture_output=True, text=True)
    assert done.returncode == 0 and f"PASS {len(x)} samples x 4 steps" in done.stdout, done.stdout + done.stderr
    assert (scores < 0).any()  # negative scores went through the two's complement golden words
    # the Verilog core streams the readout's V[T-1] (its RTL run: tests/exporters/test_export_verilog.py)
    core = export(dep.graph, "verilog", tmp_path / "v", timesteps=4, golden=x[:2])
    manifest = json.loads((core / "core.json").read_text())
    assert manifest["output"] == {"readout": "membrane", "bits": dep.graph.nodes["scores"].state.bits}
    assert [s["counts"] for s in json.loads((core / "golden.json").read_text())["samples"]] == scores[:2].tolist()


def _check_qonnx(path, x, scores) -> None:
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from qsnn_deploy.exporters._onnx_time import drive_step_model

    wrapper = ModelWrapper(onnx.load(path))
    contract = json.loads({p.key: p.value for p in wrapper.model.metadata_props}["qsnn_deploy"])
    for i in range(len(x)):  # the QONNX model has a fixed batch of one
        got, _ = drive_step_model(lambda feeds: execute_onnx(wrapper, feeds), contract, x[i : i + 1], 4, x_dtype=np.float32)
        assert np.array_equal(got, scores[i : i + 1])


def test_cli_trains_sg_cvx_from_a_conv_checkpoint(runner, tmp_path, base_ckpt) -> None:
    from qsnn_deploy.app.cli import cli as main

    out = tmp_path / "run"
    args = ["train", "--method", "sg-cvx", "--init", str(base_ckpt), "--strengths", "2", "--limit-train", "160"]
    result = runner.invoke(main, [*args, "--limit-test", "32", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "sg-cvx readout" in result.output and (out / "best.pt").is_file()
    sim = runner.invoke(main, ["simulate", str(out / "best.pt"), "--data", "synthetic", "--limit", "8"])
    assert sim.exit_code == 0, sim.output
    par = runner.invoke(main, ["parity", str(out / "best.pt"), "--data", "synthetic", "--limit", "8"])
    assert par.exit_code == 0 and "identical output scores" in par.output, par.output
    bad = runner.invoke(main, ["train", "--method", "cvx", "--init", str(base_ckpt), "--out", str(tmp_path / "r2")])
    assert bad.exit_code != 0 and "--init" in bad.output


def test_refit_frozen_for_another_target_is_refused(refit_run) -> None:
    from qsnn_deploy.training.convex.conv_checkpoint import freeze_conv_readout, load_conv_readout

    out, _ = refit_run
    with pytest.raises(TargetError, match="refit on int4-core"):
        freeze_conv_readout(load_conv_readout(out / "best.pt"), "seq-core")


def test_membrane_readout_refuses_what_the_state_or_weights_cannot_hold(base_ckpt) -> None:
    from qsnn_deploy.analysis.bounds import readout_score_bound
    from qsnn_deploy.app.loading import load_deployable
    from qsnn_deploy.passes.readout import membrane_readout

    graph = load_deployable(base_ckpt).graph
    w = np.zeros((10, FEATURES), np.int64)
    w[:, :5] = 7
    b = np.arange(10)
    shift = 0
    while readout_score_bound(w, b, shift + 1, 4) < graph.nodes["lif2"].state.max:
        shift += 1
    ok = membrane_readout(graph, "lif2", w, b, shift, 4)  # the largest shift that fits
    assert ok.nodes["scores"].decay == 1.0 and ok.nodes["scores"].input_shift == shift
    with pytest.raises(TargetError, match="beyond the state type"):
        membrane_readout(graph, "lif2", w, b, shift + 1, 4)
    with pytest.raises(TargetError, match="weight type"):
        membrane_readout(graph, "lif2", w * 2, b, 0, 4)
    with pytest.raises(GraphError, match="not a LIF"):
        membrane_readout(graph, "conv2", w, b, 0, 4)
    with pytest.raises(GraphError, match="readout weight must be"):
        membrane_readout(graph, "lif1", w, b, 0, 4)


def test_a_model_without_a_validation_split_or_conv_layers_is_refused(tmp_path, make_ckpt) -> None:
    from qsnn_deploy.errors import QsnnError
    from qsnn_deploy.training.convex.conv import ConvRefit, refit

    with pytest.raises(QsnnError, match="validation split"):
        refit(ConvRefit(init=str(make_ckpt())), tmp_path / "r", progress=False)


def test_quantized_readout_takes_the_largest_shift_that_fits_or_refuses() -> None:
    from qsnn_deploy.analysis.bounds import readout_score_bound
    from qsnn_deploy.ir.dtypes import IntType
    from qsnn_deploy.training.convex import problem
    from qsnn_deploy.training.convex.conv import quantize_at

    rng = np.random.default_rng(0)
    readout = problem.Readout(rng.normal(size=(3, 20)), rng.normal(size=3), 0.1, 0.0, "fista", "optimality residual", 0.0, 1, 0.0)
    weight, state = IntType(4, True, True), IntType(24, True)
    q = quantize_at(readout, 100, 1.0, weight, state)
    assert np.abs(q.weight).max() == 7 and readout_score_bound(q.weight, q.bias, q.input_shift, 100) < state.max
    b_next = np.rint(readout.bias * q.scale * 2.0 ** (q.input_shift + 1) / 100).astype(np.int64)
    assert readout_score_bound(q.weight, b_next, q.input_shift + 1, 100) >= state.max  # one more bit would not fit
    with pytest.raises(TargetError, match="even at input shift 0"):
        quantize_at(readout, 100, 1.0, weight, IntType(8, True))


def test_parity_of_a_refit_compares_the_float_conv_layers_under_the_integer_readout(refit_run, base_ckpt, tmp_path) -> None:
    from click.testing import CliRunner

    from qsnn_deploy.app.cli import cli
    from qsnn_deploy.training.convex.conv_checkpoint import load_conv_readout
    from qsnn_deploy.training.model import QSNN

    out, _ = refit_run
    report = tmp_path / "parity.json"
    res = CliRunner().invoke(
        cli, ["parity", str(out / "best.pt"), "--data", "synthetic", "--limit", "48", "--json", str(report), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(report.read_text())
    assert doc["output_readout"] == "membrane" and [lp["name"] for lp in doc["layers"]] == ["lif1", "lif2", "scores"]
    assert "identical output scores" in res.output
    # independently: the base QAT model's float lif2 counts times the integer readout
    refit = load_conv_readout(out / "best.pt")
    from qsnn_deploy.training.checkpoint import load_checkpoint

    base = QSNN(refit.base.model_config)
    base.load_state_dict(load_checkpoint(base_ckpt).state_dict)
    test = load_split("synthetic", "test", limit=48, seed=0)
    with torch.no_grad():
        rec = base.eval()(torch.from_numpy(test.x), record=True)
    counts = rec.spikes[1].sum(0).flatten(1).numpy().astype(np.int64)
    float_scores = (counts @ refit.weight.T << refit.input_shift) + 4 * refit.bias
    assert doc["float_accuracy"] == pytest.approx(float((float_scores.argmax(axis=1) == test.y).mean()))
    ints = simulate(load_deployable_graph(out / "best.pt"), test.x.astype(np.int64), 4).counts
    assert doc["identical_output_share"] == pytest.approx(float((float_scores == ints).all(axis=1).mean()))
    assert doc["int_accuracy"] == pytest.approx(float((ints.argmax(axis=1) == test.y).mean()))


def load_deployable_graph(path):
    from qsnn_deploy.app.loading import load_deployable

    return load_deployable(path).graph
