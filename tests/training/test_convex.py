"""Convex parameter-reconstruction training: tasks, solvers, and a convex-trained net deployed end to end.

Bit-exactness is checked against the other implementations: the NumPy reference and fast
simulators, onnxruntime (step and unrolled ONNX) and qonnx's executor, on real task samples
and on hypothesis-generated witness stacks (both resets, leaky and non-leaky, saturating
inputs of 255 on 8-bit weights).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qsnn_deploy.data.loaders import load_split, train_val_split
from qsnn_deploy.errors import DataError
from qsnn_deploy.frontends.convex_stack import freeze_stack
from qsnn_deploy.sim import simulate
from qsnn_deploy.targets import load_target
from qsnn_deploy.training.convex import problem
from qsnn_deploy.training.convex.checkpoint import StackModel, load_stack, save_stack
from qsnn_deploy.training.convex.model import StackConfig, gaussian_witnesses, integer_features


def test_first_last_xor_labels_are_the_xor_of_the_first_and_last_bit() -> None:
    s = load_split("first-last-xor", "test", timesteps=7, limit=300)
    bits = s.x[:, :, 1, 0, 0].astype(int)  # channel 1 is the 1 bit
    assert s.x.shape == (300, 7, 2, 1, 1) and np.all(s.x.sum(axis=2) == 1)  # one-hot per step
    assert np.array_equal(s.y, bits[:, 0] ^ bits[:, -1])
    assert 0.35 < s.y.mean() < 0.65
    with pytest.raises(DataError, match="6..14"):
        load_split("first-last-xor", "train", timesteps=5)


def test_base_addition_labels_are_digit_sums_modulo_the_base() -> None:
    s = load_split("base-addition", "train", timesteps=4, limit=50)
    digits = np.argmax(s.x[:, :, :, 0, 0], axis=2)
    assert np.array_equal(s.y, digits.sum(axis=1) % s.num_classes)


def _tiny_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    phi = (rng.random((60, 12)) < 0.4).astype(float)
    y = (phi[:, 0] + phi[:, 3] > phi[:, 5]).astype(np.int64)
    return phi, y


@pytest.mark.parametrize("loss", ["softmax", "sqhinge", "squared"])
@pytest.mark.parametrize("penalty", ["group", "l1"])
def test_fista_reaches_clarabels_optimum(loss: str, penalty: str) -> None:
    phi, y = _tiny_problem()
    exact = problem.solve(phi, y, 2, loss=loss, penalty=penalty, lam=0.02, solver="cvxpy")
    fista = problem.solve(phi, y, 2, loss=loss, penalty=penalty, lam=0.02, solver="fista")
    assert exact.certificate == "duality gap" and exact.certificate_value < 1e-6
    assert fista.certificate == "optimality residual" and fista.certificate_value < 1e-4
    assert abs(fista.objective - exact.objective) < 1e-4 * max(1.0, exact.objective)


def test_strength_above_lambda_max_prunes_every_neuron() -> None:
    phi, y = _tiny_problem(1)
    top = problem.lambda_max(phi, y, 2, "group")
    above = problem.solve(phi, y, 2, loss="squared", penalty="group", lam=top * 1.01, solver="cvxpy")
    below = problem.solve(phi, y, 2, loss="squared", penalty="group", lam=top * 0.5, solver="cvxpy")
    assert not above.active(1e-5).any() and below.active(1e-5).any()


def _train_tiny_cvx(timesteps: int = 6) -> tuple[StackModel, object]:
    train = load_split("first-last-xor", "train", timesteps=timesteps, limit=300)
    test = load_split("first-last-xor", "test", timesteps=timesteps, limit=120)
    fit, val = train_val_split(train, 0.25, 0)
    cfg = StackConfig(input_size=2, num_classes=2, timesteps=timesteps, stacks=12, widths=(4, 3))
    hidden = gaussian_witnesses(cfg)
    path = problem.fit_path(
        integer_features(cfg, hidden, fit.x),
        fit.y,
        integer_features(cfg, hidden, val.x),
        val.y,
        2,
        loss="hinge",
        strengths=3,
        solver="cvxpy",
    )
    w, b = problem.quantize(path.best, cfg.readout_bits, path.best.active())
    return StackModel(cfg, hidden, w, b, "first-last-xor"), test


def test_convex_trained_net_deploys_bit_exactly_to_every_format(tmp_path) -> None:
    from qsnn_deploy.exporters import export
    from qsnn_deploy.exporters.json_graph import read_graph_json
    from qsnn_deploy.exporters.onnx_plain import run_onnx

    model, test = _train_tiny_cvx()
    save_stack(model, tmp_path / "best.pt")
    model = load_stack(tmp_path / "best.pt")
    graph = freeze_stack(model)
    kept = graph.metadata["kept_neurons"]
    assert kept[-1] == int((np.abs(model.readout_weight).sum(axis=0) > 0).sum()) < model.config.feature_count  # pruned
    x = test.x.astype(np.int64)
    scores = model.scores(test.x)
    for backend in ("reference", "fast"):
        res = simulate(graph, x, model.config.timesteps, backend=backend)
        assert np.array_equal(res.counts, scores) and np.array_equal(res.predictions, model.predict(test.x))
    T = model.config.timesteps
    export(graph, "json", tmp_path / "g.json", timesteps=T, golden=x[:4])
    graph2, _, meta = read_graph_json(tmp_path / "g.json")
    assert np.array_equal(np.stack([g["output_counts"] for g in meta["golden"]]), scores[:4])
    assert np.array_equal(simulate(graph2, x[:8], T).counts, scores[:8])
    for unroll in (False, True):
        path = export(graph, "onnx", tmp_path / f"m{unroll}.onnx", timesteps=T, unroll=unroll)
        assert np.array_equal(run_onnx(path, x[:16], T)[0], scores[:16])
    _check_qonnx(export(graph, "qonnx", tmp_path / "m.qonnx.onnx", timesteps=T), x[:3], scores[:3], T)
    import nir

    nir_graph = nir.read(export(graph, "nir", tmp_path / "m.nir"))
    assert nir_graph.metadata["readout"] == "membrane" and "scores" in nir_graph.nodes


def _check_qonnx(path, x, scores, T) -> None:
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from qsnn_deploy.exporters._onnx_time import drive_step_model

    wrapper = ModelWrapper(onnx.load(path))
    contract = json.loads({p.key: p.value for p in wrapper.model.metadata_props}["qsnn_deploy"])
    for i in range(len(x)):  # the QONNX model has a fixed batch of one
        got, _ = drive_step_model(lambda feeds: execute_onnx(wrapper, feeds), contract, x[i : i + 1], T, x_dtype=np.float32)
        assert np.array_equal(got, scores[i : i + 1])


@settings(max_examples=8, deadline=None)
@given(
    reset=st.sampled_from(["subtract", "zero"]),
    features=st.sampled_from(["last", "count"]),
    decay_mul=st.sampled_from([0, 1, 128, 255, 256]),
    threshold_rel=st.sampled_from([0.05, 0.5, 2.0]),
    seed=st.integers(0, 2**16),
)
def test_witness_features_equal_the_simulators_on_generated_stacks(reset, features, decay_mul, threshold_rel, seed) -> None:
    cfg = StackConfig(
        input_size=3,
        num_classes=3,
        timesteps=5,
        stacks=3,
        widths=(3, 2),
        reset=reset,
        features=features,
        decay_mul=decay_mul,
        threshold_rel=threshold_rel,
        weight_std=200.0,  # clipped at +-127: saturating 8-bit weights
        input_max=255,
        seed=seed,
    )
    hidden = gaussian_witnesses(cfg)
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([0, 1, 254, 255], np.uint16), size=(20, 5, 3, 1, 1))
    w = rng.integers(-127, 128, (3, cfg.feature_count))
    model = StackModel(cfg, hidden, w, rng.integers(-127, 128, 3))
    target = load_target("seq-core").with_changes(reset=reset)
    res = simulate(freeze_stack(model, target, prune=False), x.astype(np.int64), 5, backend="reference")
    assert np.array_equal(res.counts, model.scores(x))


@pytest.mark.parametrize("method", ["cvx", "sg-cvx", "cvx-sg"])
def test_train_method_writes_the_run_outputs_and_its_model_deploys(runner, tmp_path, method: str) -> None:
    from qsnn_deploy.app.cli import cli as main
    from qsnn_deploy.app.loading import load_deployable

    out = tmp_path / method
    args = ["train", "--method", method, "--data", "first-last-xor", "--timesteps", "6", "--stacks", "12", "--widths", "4,3"]
    args += [
        "--limit-train",
        "160",
        "--limit-test",
        "80",
        "--strengths",
        "2",
        "--loss",
        "hinge",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "metrics.json").read_text())
    assert rows[-1]["method"] == method and 0.0 <= rows[-1]["test_acc"] <= 1.0
    assert (out / "path.png").is_file() and (out / "best.pt").is_file()
    assert (out / "accuracy.png").is_file() == (method != "cvx")
    dep = load_deployable(out / "best.pt")  # frozen for seq-core (the default target int4-core cannot run it)
    test = load_split("first-last-xor", "test", timesteps=6, limit=80)
    assert dep.target.name == "seq-core"
    assert np.array_equal(simulate(dep.graph, test.x.astype(np.int64), 6).predictions, load_stack(out / "best.pt").predict(test.x))
    acc = float((load_stack(out / "best.pt").predict(test.x) == test.y).mean())
    assert acc == pytest.approx(rows[-1]["test_acc"])


def test_stack_options_are_refused_for_the_qat_trainer(runner, tmp_path) -> None:
    from qsnn_deploy.app.cli import cli as main

    result = runner.invoke(main, ["train", "--method", "sg", "--data", "synthetic", "--stacks", "4", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "--stacks" in result.output
