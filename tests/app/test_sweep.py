"""``qsnn-deploy sweep`` (issue 21): range syntax, the Pareto front, and one sweep of the tiny
checkpoint on synthetic data whose rows must equal what ``parity`` measures for the same profile."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qsnn_deploy.app.cli import cli
from qsnn_deploy.app.sweep import Variant, pareto_front, parse_int_values
from qsnn_deploy.errors import QsnnError
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.targets import load_target

DATA = ["--data", "synthetic", "--limit", "12", "--quiet"]


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("16..40", [16, 20, 24, 28, 32, 36, 40]),
        ("16..40:8", [16, 24, 32, 40]),
        ("16..19:2", [16, 18]),
        ("32,16,24,16", [16, 24, 32]),
        ("24", [24]),
        ("16..24:4,30", [16, 20, 24, 30]),
    ],
)
def test_parse_int_values(text, values):
    assert parse_int_values(text) == values


@given(low=st.integers(0, 64), span=st.integers(0, 64), step=st.integers(1, 16), extra=st.lists(st.integers(0, 128), max_size=4))
def test_parse_int_values_matches_range(low, span, step, extra):
    text = ",".join([f"{low}..{low + span}:{step}", *map(str, extra)])
    assert parse_int_values(text) == sorted({*range(low, low + span + 1, step), *extra})


@pytest.mark.parametrize("text", ["", "40..16", "16..40:0", "16..", "a,b", "16-40", "16..40:-4"])
def test_parse_int_values_refuses_malformed(text):
    with pytest.raises(QsnnError, match="LO..HI"):
        parse_int_values(text)


def test_malformed_range_is_a_usage_error(runner, make_ckpt):
    res = runner.invoke(cli, ["sweep", str(make_ckpt()), "--state-bits", "40..16", *DATA])
    assert res.exit_code == 2 and "--state-bits" in res.stderr and "LO..HI" in res.stderr


def _row(memory: int, acc: float, identical: float, error: str | None = None) -> dict:
    return {"memory_bits": memory, "int_accuracy": acc, "identical_output_share": identical, "error": error}


def test_pareto_front():
    rows = [
        _row(100, 0.80, 0.10),  # smallest: on the front
        _row(120, 0.80, 0.10),  # dominated by the first (more memory, nothing better)
        _row(140, 0.85, 0.05),  # best accuracy so far: on the front
        _row(160, 0.84, 0.50),  # best identical share: on the front
        _row(180, 0.84, 0.50),  # same figures as the one before, more memory: dominated
        _row(90, 0.99, 0.99, error="rule failed"),  # failed variants are never on it
        _row(140, 0.85, 0.05),  # a tie with a front member: both stay
    ]
    assert pareto_front(rows) == [True, False, True, True, False, False, True]


def test_variant_profile_changes_only_what_it_names():
    base = load_target("int4-core")
    wide = Variant(state_bits=32, decay_shift=20).profile(base)
    assert (wide.name, wide.state.name, wide.decay_shift) == ("int4-core/s32/d20", "INT32", 20)
    assert (wide.weight, wide.input, wide.accumulator, wide.rounding, wide.limits) == (
        base.weight,
        base.input,
        base.accumulator,
        base.rounding,
        base.limits,
    )
    assert Variant(weight_bits=6).profile(base).weight.name == "INT6_NARROW"


def test_sweep_rows_equal_parity_of_the_same_profile(runner, make_ckpt, tmp_path):
    """State 16/24/32 x weights 3/4 on the tiny model: INT16 cannot hold its layer-1 threshold and
    3-bit weights cannot hold its 4-bit weights (error rows); the rest must match ``parity``."""
    model = make_ckpt()
    sweep_json, plot = tmp_path / "sweep.json", tmp_path / "sweep.png"
    args = ["sweep", str(model), "--state-bits", "16..32:8", "--weight-bits", "3,4", *DATA, "--json", str(sweep_json), "--plot", str(plot)]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, (res.output, res.exception)
    doc = json.loads(sweep_json.read_text())
    assert doc["samples"] == 12 and doc["base_target"] == "int4-core"
    rows = {r["target"].removeprefix("int4-core/"): r for r in doc["variants"]}
    assert list(rows) == ["s16/w3", "s16/w4", "s24/w3", "s24/w4", "s32/w3", "s32/w4"]
    assert all("INT3_NARROW [-3, 3]" in rows[f"s{s}/w3"]["error"] for s in (16, 24, 32))
    assert "threshold needs more than the target's INT16 state" in rows["s16/w4"]["error"]
    assert [r["pareto"] for r in doc["variants"]] == pareto_front(doc["variants"])
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "s32/w4" in res.stdout and "int4-core/s32/w4" not in res.stdout  # the table names variants by their changes

    wide = tmp_path / "s32.json"
    wide.write_text(json.dumps(load_target("int4-core").with_changes(name="s32", state=IntType(32, signed=True)).to_dict()))
    for target, row in (("int4-core", rows["s24/w4"]), (str(wide), rows["s32/w4"])):
        parity = tmp_path / "parity.json"
        assert runner.invoke(cli, ["parity", str(model), "--target", target, *DATA, "--json", str(parity)]).exit_code == 0
        ref = json.loads(parity.read_text())
        for key in ("float_accuracy", "int_accuracy", "accuracy_drop_pp", "prediction_agreement", "identical_output_share"):
            assert row[key] == ref[key], key
        assert row["layer_spike_agreement"] == {layer["name"]: layer["spike_agreement"] for layer in ref["layers"]}
        assert row["saturations"] == sum(layer["saturations"] for layer in ref["layers"])
        assert row["memory_bits"] == sum(layer["memory_bits"] for layer in ref["layers"])
    assert rows["s24/w4"]["memory_bits"] < rows["s32/w4"]["memory_bits"]


def test_sweep_in_worker_processes_matches_in_process(make_ckpt):
    """--jobs runs variants in spawned processes; the rows must not depend on it."""
    from qsnn_deploy.app.sweep import run_sweep, variants
    from qsnn_deploy.data.loaders import load_split

    split = load_split("synthetic", "test", timesteps=4, limit=6)
    sweep = variants([24, 32])
    one = run_sweep(make_ckpt(), "int4-core", sweep, split.x, split.y, jobs=1, progress=False)
    two = run_sweep(make_ckpt(), "int4-core", sweep, split.x, split.y, jobs=2, progress=False)
    assert all(r["error"] is None for r in one)
    assert one == two and [r["state_bits"] for r in one] == [24, 32]
    assert one[0]["memory_bits"] < one[1]["memory_bits"]


def test_sweep_runs_variants_the_base_target_cannot(runner, make_ckpt, tmp_path):
    """A 6-bit model does not fit int4-core's INT4 weights, but its w6 variant does."""
    from qsnn_deploy.training.config import ModelConfig

    model = make_ckpt(config=ModelConfig(timesteps=4, weight_bits=6))
    out = tmp_path / "sweep.json"
    res = runner.invoke(cli, ["sweep", str(model), "--weight-bits", "4,6", *DATA, "--json", str(out)])
    assert res.exit_code == 0, (res.output, res.exception)
    w4, w6 = json.loads(out.read_text())["variants"]
    assert "beyond target weight type INT4_NARROW" in w4["error"]
    assert w6["error"] is None and w6["weight_bits"] == 6 and 0 <= w6["int_accuracy"] <= 1
    assert "failed w4: layer 'conv1'" in res.stdout
