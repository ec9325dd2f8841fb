"""Bad input through the CLI: one clear ``Error: ...`` line, the documented exit status, no
traceback, and no output file.

Exit statuses (qsnn_deploy/errors.py, docs/cli.md): 1 QsnnError, 2 click usage error,
3 checkpoint, 4 data, 5 graph, 6 target, 7 export, 8 output exists.

Library-level checkpoint checks (pickle refusal, corrupt files, NaN) are in test_train.py;
here every case goes through ``qsnn-deploy`` itself. Checkpoints are tiny (T = 4) and every
data set is ``synthetic --limit 8``, so a case costs well under a second, except the one
full simulation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qsnn_deploy.app.cli import cli
from qsnn_deploy.training.checkpoint import load_checkpoint
from qsnn_deploy.training.config import ModelConfig

DATA = ["--data", "synthetic", "--limit", "8"]


# --- fixtures and helpers ---------------------------------------------------------------------


def _files(folder: Path) -> set[str]:
    """Every file under ``folder`` (temp files of atomic writes included)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def run_fails(runner, args: list[str], status: int, *needles: str, out_dir: Path | None = None) -> str:
    """Invoke the CLI and check a clean failure; returns the error line.

    The run must exit with ``status``, print exactly one ``Error:`` line on stderr containing
    every ``needle``, show no traceback, and (if ``out_dir`` is given) leave no file there.
    """
    before = _files(out_dir) if out_dir else set()
    res = runner.invoke(cli, args)
    assert res.exit_code == status, (res.exit_code, res.output, res.exception)
    # a library error that escaped the CLI's handler shows up here as the exception itself
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, res.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    if out_dir is not None:
        assert _files(out_dir) == before, f"files appeared: {_files(out_dir) - before}"
    return errors[0]


@pytest.fixture
def out_dir(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _export(model: Path, out_dir: Path, *extra: str) -> list[str]:
    return ["export", str(model), "--format", "json", "-o", str(out_dir / "graph.json"), *extra]


def _simulate(model: Path, out_dir: Path, *extra: str) -> list[str]:
    return ["simulate", str(model), *DATA, "--quiet", "--json", str(out_dir / "report.json"), *extra]


def _parity(model: Path, out_dir: Path, *extra: str) -> list[str]:
    return ["parity", str(model), *DATA, "--quiet", "--json", str(out_dir / "parity.json"), *extra]


COMMANDS = {"export": _export, "simulate": _simulate, "parity": _parity}


# --- untrusted checkpoints ----------------------------------------------------------------------


class _Evil:
    """Unpickling this creates ``path``: stands in for arbitrary code in a checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_pickle_with_code_is_refused_and_never_runs(runner, make_ckpt, tmp_path, out_dir, command):
    marker = tmp_path / "pwned_marker"
    path = make_ckpt()
    payload = torch.load(path, weights_only=True)
    payload["metrics"] = {"x": _Evil(marker)}
    torch.save(payload, path)
    run_fails(runner, COMMANDS[command](path, out_dir), 3, "refused to unpickle", "--trust-checkpoint", str(path), out_dir=out_dir)
    assert not marker.exists()


def test_trust_checkpoint_warns_that_it_unpickles_fully(runner, make_ckpt, out_dir):
    """A checkpoint holding a harmless non-tensor object: refused, then loaded with a warning."""
    import fractions

    path = make_ckpt()
    payload = torch.load(path, weights_only=True)
    payload["metrics"] = {"ratio": fractions.Fraction(1, 3)}
    torch.save(payload, path)
    run_fails(runner, _export(path, out_dir), 3, "refused to unpickle", out_dir=out_dir)
    res = runner.invoke(cli, _export(path, out_dir, "--trust-checkpoint"))
    assert res.exit_code == 0, res.output
    warning = [line for line in res.stderr.splitlines() if "--trust-checkpoint" in line]
    assert warning and warning[0].startswith("warning:") and "unpickling" in warning[0] and str(path) in warning[0]
    json.loads((out_dir / "graph.json").read_text())


# --- corrupt and mismatched checkpoints ---------------------------------------------------------


@pytest.mark.parametrize("damage", ["empty", "garbage", "zip-header", "truncated"])
def test_corrupt_checkpoint(runner, make_ckpt, out_dir, damage):
    path = make_ckpt()
    data = path.read_bytes()
    data = {
        "empty": b"",
        "garbage": bytes(range(256)) * 8,
        "zip-header": b"PK\x03\x04" + b"\x00" * 64,
        "truncated": data[: len(data) // 2],
    }[damage]
    path.write_bytes(data)
    run_fails(runner, _simulate(path, out_dir), 3, str(path), "checkpoint", out_dir=out_dir)


def test_bit_flipped_checkpoint_never_crashes(runner, make_ckpt, out_dir):
    """Flipped bytes inside the archive: a clean checkpoint error, or (if only tensor data
    changed and torch does not notice) a model that loads and is then checked as usual."""
    path = make_ckpt()
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 4096):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    res = runner.invoke(cli, _export(path, out_dir))
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output and res.exit_code in (0, 3, 6), res.output


def test_missing_layer_is_named(runner, make_ckpt, out_dir):
    path = make_ckpt(edit=lambda sd: sd.pop("convs.1.weight"))
    run_fails(runner, _export(path, out_dir), 3, "convs.1.weight", "does not match the architecture", out_dir=out_dir)


def test_unexpected_layer_is_named(runner, make_ckpt, out_dir):
    path = make_ckpt(edit=lambda sd: sd.update({"convs.2.weight": torch.zeros(3, 3)}))
    run_fails(runner, _export(path, out_dir), 3, "convs.2.weight", out_dir=out_dir)


def test_wrong_layer_shape_is_named(runner, make_ckpt, out_dir):
    path = make_ckpt(edit=lambda sd: sd.update({"fc.weight": torch.zeros(10, 5)}))
    run_fails(runner, _export(path, out_dir), 3, "fc.weight", "size mismatch", out_dir=out_dir)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_weights_are_refused(runner, make_ckpt, out_dir, value):
    def edit(sd):
        sd["convs.0.weight"][0, 0, 0, 0] = value

    path = make_ckpt(edit=edit)
    run_fails(runner, _simulate(path, out_dir), 3, "convs.0.weight", "NaN or Inf", out_dir=out_dir)


def test_non_finite_batch_norm_statistics_are_refused(runner, make_ckpt, out_dir):
    def edit(sd):
        sd["bns.1.running_var"][3] = float("inf")

    run_fails(runner, _export(make_ckpt(edit=edit), out_dir), 3, "bns.1.running_var", out_dir=out_dir)


# --- models the target cannot run ---------------------------------------------------------------


def test_weights_beyond_target_bits_name_layer_and_range(runner, make_ckpt, out_dir):
    """A 6-bit QAT model on int4-core (INT4_NARROW weights, [-7, 7])."""
    path = make_ckpt(config=ModelConfig(timesteps=4, weight_bits=6))
    line = run_fails(runner, _export(path, out_dir), 6, "layer 'conv1'", "INT4_NARROW", "[-7, 7]", out_dir=out_dir)
    assert "weights span [" in line


def test_float_model_is_refused(runner, make_ckpt, out_dir):
    path = make_ckpt(config=ModelConfig(timesteps=4, weight_bits=32))
    run_fails(runner, _simulate(path, out_dir), 6, "layer 'conv1'", "float weights", out_dir=out_dir)


@pytest.mark.parametrize("threshold", [0.0, -1.5])
def test_non_positive_threshold_in_config(runner, make_ckpt, out_dir, threshold):
    path = make_ckpt()
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["threshold"] = threshold
    torch.save(payload, path)
    run_fails(runner, _export(path, out_dir), 3, str(path), "threshold must be positive", out_dir=out_dir)


def test_non_positive_threshold_in_weights_names_the_layer(runner, make_ckpt, out_dir):
    def edit(sd):
        sd["lifs.1.threshold"].fill_(0.0)

    run_fails(runner, _export(make_ckpt(edit=edit), out_dir), 3, "layer 'lif2'", "not positive", out_dir=out_dir)


# --- bad options -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("steps", ["0", "-3"])
def test_timesteps_must_be_positive(runner, make_ckpt, out_dir, command, steps):
    run_fails(runner, COMMANDS[command](make_ckpt(), out_dir, "--timesteps", steps), 2, "--timesteps", out_dir=out_dir)


def test_train_timesteps_zero_is_a_usage_error(runner, tmp_path):
    run_fails(runner, ["train", "--out", str(tmp_path / "run"), "--timesteps", "0", "--data", "synthetic", "--quiet"], 2, "--timesteps")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["export", "simulate"])
def test_unknown_target(runner, make_ckpt, out_dir, command):
    run_fails(
        runner,
        COMMANDS[command](make_ckpt(), out_dir, "--target", "nope-core"),
        6,
        "unknown target 'nope-core'",
        "int4-core",
        out_dir=out_dir,
    )


_PROFILE = {"name": "t", "weight": "INT4_NARROW", "input": "UINT8", "accumulator": "INT24", "state": "INT24", "decay_shift": 16}
MALFORMED_PROFILES = {
    "not-json": b"{not json",
    "not-utf8": b"\xff\xfe\x00garbage",
    "empty": b"",
    "list": b"[]",
    "missing-weight": json.dumps({k: v for k, v in _PROFILE.items() if k != "weight"}).encode(),
    "unknown-key": json.dumps({**_PROFILE, "turbo": True}).encode(),
    "bad-type-name": json.dumps({**_PROFILE, "state": "FLOAT16"}).encode(),
    "unsigned-state": json.dumps({**_PROFILE, "state": "UINT24"}).encode(),
    "decay-shift-string": json.dumps({**_PROFILE, "decay_shift": "x"}).encode(),
    "decay-shift-float": json.dumps({**_PROFILE, "decay_shift": 8.5}).encode(),
    "decay-shift-bool": json.dumps({**_PROFILE, "decay_shift": True}).encode(),
    "limits-not-object": json.dumps({**_PROFILE, "limits": "abc"}).encode(),
    "limit-not-integer": json.dumps({**_PROFILE, "limits": {"max_fan_in": "big"}}).encode(),
    "bad-rounding": json.dumps({**_PROFILE, "rounding": ["x"]}).encode(),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_PROFILES))
def test_malformed_target_profile(runner, make_ckpt, tmp_path, out_dir, case):
    profile = tmp_path / "in" / "profile.json"
    profile.parent.mkdir(exist_ok=True)
    profile.write_bytes(MALFORMED_PROFILES[case])
    run_fails(runner, _simulate(make_ckpt(), out_dir, "--target", str(profile)), 6, "target", out_dir=out_dir)


@pytest.mark.parametrize("data", ["fmnist", "mnist", "dvs"])
def test_unknown_data_folder(runner, make_ckpt, tmp_path, out_dir, data):
    nowhere = tmp_path / "no-such-folder"
    args = [
        "simulate",
        str(make_ckpt()),
        "--data",
        data,
        "--data-dir",
        str(nowhere),
        "--limit",
        "8",
        "--quiet",
        "--json",
        str(out_dir / "report.json"),
    ]
    run_fails(runner, args, 4, "not found", str(nowhere), out_dir=out_dir)


def test_train_with_unknown_data_folder_writes_no_file(runner, tmp_path):
    out = tmp_path / "run"
    run_fails(
        runner,
        ["train", "--out", str(out), "--data", "fmnist", "--data-dir", str(tmp_path / "nowhere"), "--epochs", "1", "--quiet"],
        4,
        "not found",
    )
    assert _files(out) == set()  # the run folder may exist, but holds nothing (a rerun is not blocked)


# --- graph JSON models ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{", "not valid UTF-8 JSON"),
        (b"\x89PNG\r\n", "not valid UTF-8 JSON"),
        (b'{"format": "qsnn-deploy-graph", "version": 99}', "version 99"),
        (b"[1, 2]", "not a qsnn-deploy-graph document"),
    ],
    ids=["truncated", "binary", "version", "not-object"],
)
def test_malformed_graph_json_model(runner, tmp_path, out_dir, content, needle):
    path = tmp_path / "in" / "graph.json"
    path.parent.mkdir()
    path.write_bytes(content)
    run_fails(runner, _simulate(path, out_dir), 5, needle, out_dir=out_dir)


def test_parity_needs_a_checkpoint_not_a_graph(runner, make_ckpt, tmp_path, out_dir):
    graph = tmp_path / "in" / "graph.json"
    assert runner.invoke(cli, ["export", str(make_ckpt()), "--format", "json", "-o", str(graph)]).exit_code == 0
    run_fails(runner, _parity(graph, out_dir), 1, "parity needs the float model", out_dir=out_dir)


# --- existing outputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "onnx"])
def test_export_refuses_to_overwrite_without_force(runner, make_ckpt, out_dir, fmt):
    target = out_dir / f"model.{fmt}"
    target.write_bytes(b"precious")
    args = ["export", str(make_ckpt()), "--format", fmt, "-o", str(target)]
    run_fails(runner, args, 8, str(target), "--force", out_dir=out_dir)
    assert target.read_bytes() == b"precious"
    res = runner.invoke(cli, [*args, "--force"])
    assert res.exit_code == 0, res.output
    assert target.read_bytes() != b"precious"
    assert _files(out_dir) == {target.name}  # no temp file left beside it
    if fmt == "json":
        from qsnn_deploy.exporters.json_graph import read_graph_json

        read_graph_json(target)


def test_good_checkpoint_still_simulates(runner, make_ckpt, out_dir):
    """The control: the same tiny checkpoint runs end to end and writes its report."""
    path = make_ckpt()
    assert load_checkpoint(path).model_config.timesteps == 4
    res = runner.invoke(cli, _simulate(path, out_dir, "--backend", "reference"))
    assert res.exit_code == 0, res.output
    assert json.loads((out_dir / "report.json").read_text())
    assert _files(out_dir) == {"report.json"}
