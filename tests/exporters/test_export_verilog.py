"""The Verilog export runs bit-exactly in RTL simulation (cocotb on Verilator and Icarus).

Each test exports a graph with golden vectors from the simulator and runs the generated
``make test``: the cocotb testbench compares every layer's spike raster at every step and the
output counts, and the make exit status says whether they were identical. Random graphs
come from hypothesis: every LIF arithmetic variant, narrow states whose membranes saturate
or wrap, a channel with all-maximal weights (the accumulator's edge). Verilator builds are
slow (about 30 s), so the Verilator tests keep the graph's structure and arithmetic fixed
per build and let hypothesis vary weights, thresholds, biases and inputs (the ROM and golden
files are read at run time: no rebuild); Icarus compiles in a second and takes the fully
random graphs. Without ``CI`` a missing tool skips; with ``CI`` set it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from graph_factory import fmnist_deployable, fmnist_images, make_graph, random_input
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qsnn_deploy.exporters import export
from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Input, IntTensor, Linear, Output, SumPool2d
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.sim import simulate

WEIGHT = IntType(4, signed=True, narrow=True)
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
RTL_SETTINGS = settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t, path=ENV["PATH"]) is None]
    try:
        import cocotb  # noqa: F401
    except ImportError:
        missing.append("cocotb")
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI must install {', '.join(missing)} for the RTL tests")
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def _make(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-C", str(folder), *args], env=ENV, capture_output=True, text=True, timeout=900)


def _lif(rng: np.random.Generator, channels: int, state_bits: int, arith: dict[str, Any], drive: float) -> LIF:
    state = IntType(state_bits)
    thr = np.clip(rng.integers(1, max(2, int(drive)), channels), 1, state.max)
    bias = np.clip(rng.integers(-int(drive) // 4, int(drive) // 4 + 1, channels), state.min, state.max)
    return LIF(threshold=IntTensor(thr, state), bias=IntTensor(bias, state), state=state, **arith)


def edge_graph(seed: int, arith: list[dict[str, Any]], state_bits: int, frames: bool = False) -> Graph:
    """Input (1, 6, 6) -> Conv2d 3x3 pad 1 -> SumPool 2 -> LIF -> Flatten -> Linear -> LIF -> Linear -> LIF -> Output.

    Channel 0 of every synaptic node has all weights +7 and channel 1 all -7, so the worst-case
    sums (the accumulator widths) do not depend on the seed and the core's Verilog stays the same.
    """
    rng = np.random.default_rng(seed)
    in_type = IntType(2 if frames else 8, signed=False)
    inp = Input(shape=(1, 6, 6), dtype=in_type, encoding="frames" if frames else "static")
    nodes: list[tuple[str, Any]] = [("input", inp)]
    w1 = rng.integers(-7, 8, size=(3, 1, 3, 3))
    w1[0], w1[1] = 7, -7
    drive = 2.0 ** min(state_bits - 2, 9 + arith[0]["input_shift"])
    nodes += [("conv", Conv2d(weight=IntTensor(w1, WEIGHT), padding=(1, 1))), ("pool", SumPool2d(kernel=(2, 2), stride=(2, 2)))]
    nodes += [("lif1", _lif(rng, 3, state_bits, arith[0], drive)), ("flatten", Flatten())]
    for k, (n_in, n_out) in enumerate(((27, 5), (5, 3)), start=2):
        w = rng.integers(-7, 8, size=(n_out, n_in))
        w[0], w[1] = 7, -7
        nodes += [
            (f"fc{k}", Linear(weight=IntTensor(w, WEIGHT))),
            (f"lif{k}", _lif(rng, n_out, state_bits, arith[k - 1], 2.0 ** min(state_bits - 2, 6))),
        ]
    nodes.append(("output", Output()))
    return Graph.sequential(nodes, {"producer": "tests.test_export_verilog", "seed": seed})


ARITH = st.fixed_dictionaries(
    {
        "decay_shift": st.sampled_from([0, 4, 8]),
        "rounding": st.sampled_from(["floor", "half_up"]),
        "overflow": st.sampled_from(["saturate", "wrap"]),
        "compare": st.sampled_from(["gt", "ge"]),
        "reset": st.sampled_from(["subtract", "zero"]),
        "reset_timing": st.sampled_from(["delayed", "immediate"]),
        "input_shift": st.integers(0, 3),
        "beta": st.sampled_from([0.0, 0.5, 0.875, 1.0]),
    }
)


def _fields(a: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in a.items() if k != "beta"}
    out["decay_mul"] = int(round(a["beta"] * 2 ** a["decay_shift"]))
    return out


def _inputs(graph: Graph, n: int, seed: int, steps: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    inp = graph.input
    shape = (n, *inp.shape) if inp.encoding == "static" else (n, steps, *inp.shape)
    x = rng.integers(0, inp.dtype.max + 1, size=shape)
    x[0] = inp.dtype.max  # one sample at the input's edge: every pixel maximal
    return x


def _export(graph: Graph, folder: Path, steps: int, x: np.ndarray) -> Path:
    return export(graph, "verilog", folder, timesteps=steps, golden=x)


def _assert_passes(folder: Path, *args: str) -> dict[str, Any]:
    run = _make(folder, "test", *args)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return json.loads((folder / "rtl_stats.json").read_text())


def test_random_graphs_bit_exact_on_icarus(tmp_path_factory):
    """Every arithmetic variant on narrow states (7-14 bits), static and frames inputs."""
    _need("iverilog", "vvp")
    overflowed: list[int] = []

    @given(arith=st.lists(ARITH, min_size=3, max_size=3), state_bits=st.integers(7, 14), seed=st.integers(0, 2**16), frames=st.booleans())
    @settings(max_examples=4, deadline=None, derandomize=True)
    def examples(arith, state_bits, seed, frames):
        graph = edge_graph(seed, [_fields(a) for a in arith], state_bits, frames)
        x = _inputs(graph, 2, seed, 5)
        overflowed.append(sum(layer.saturations for layer in simulate(graph, x, 5).layers))
        folder = _export(graph, tmp_path_factory.mktemp("icarus") / "core", 5, x)
        stats = _assert_passes(folder, "SIM=icarus")
        assert stats["rasters_compared"] and len(stats["samples"]) == 2

    examples()
    assert any(overflowed), f"no example reached the state's edge: {overflowed}"


# two fixed arithmetic sets for Verilator: every choice of every field appears at least once
VERILATOR_VARIANTS = {
    "saturate": [
        dict(
            decay_shift=8,
            rounding="half_up",
            overflow="saturate",
            compare="gt",
            reset="subtract",
            reset_timing="delayed",
            input_shift=2,
            beta=0.875,
        ),
        dict(
            decay_shift=0,
            rounding="half_up",
            overflow="saturate",
            compare="ge",
            reset="zero",
            reset_timing="immediate",
            input_shift=0,
            beta=1.0,
        ),
        dict(
            decay_shift=4, rounding="floor", overflow="error", compare="gt", reset="zero", reset_timing="delayed", input_shift=1, beta=0.5
        ),
    ],
    "wrap": [
        dict(
            decay_shift=4,
            rounding="floor",
            overflow="wrap",
            compare="ge",
            reset="subtract",
            reset_timing="immediate",
            input_shift=3,
            beta=0.9375,
        ),
        dict(
            decay_shift=8,
            rounding="half_up",
            overflow="wrap",
            compare="gt",
            reset="subtract",
            reset_timing="delayed",
            input_shift=1,
            beta=0.75,
        ),
        dict(
            decay_shift=8,
            rounding="floor",
            overflow="saturate",
            compare="ge",
            reset="zero",
            reset_timing="delayed",
            input_shift=2,
            beta=0.875,
        ),
    ],
}
VERILATOR_STATE_BITS = {"saturate": 9, "wrap": 10}


@pytest.fixture(scope="module")
def verilator_builds(tmp_path_factory):
    """One Verilator build per variant set, reused by every hypothesis example."""
    return {name: tmp_path_factory.mktemp(f"verilator_{name}") / "core" for name in VERILATOR_VARIANTS}


def _reuse_build(build: Path, fresh: Path) -> None:
    """Copy the data files of ``fresh`` into ``build``, whose Verilog must be the same."""
    for name in ("qsnn_core.v", "qsnn_layer.v"):
        assert (build / name).read_text() == (fresh / name).read_text(), f"{name} changed: the build cannot be reused"
    for f in fresh.iterdir():
        if f.suffix in (".hex", ".json"):
            shutil.copyfile(f, build / f.name)


def _run_verilator_example(build: Path, tmp: Path, variant: str, seed: int) -> None:
    arith = [_fields(a) for a in VERILATOR_VARIANTS[variant]]
    graph = edge_graph(seed, arith, VERILATOR_STATE_BITS[variant])
    x = _inputs(graph, 2, seed, 6)
    ovf_counted = [s.saturations for s in simulate(graph, x, 6).layers]
    if build.exists():
        _reuse_build(build, _export(graph, tmp / "fresh", 6, x))
    else:
        _export(graph, build, 6, x)
    stats = _assert_passes(build)
    assert stats["rasters_compared"] and stats["simulator"].lower().startswith("verilator")
    return ovf_counted


@pytest.mark.parametrize("variant", list(VERILATOR_VARIANTS))
def test_edge_graphs_bit_exact_on_verilator(verilator_builds, tmp_path_factory, variant):
    """Saturating / wrapping narrow states, every arithmetic choice, data drawn by hypothesis."""
    _need("verilator", "g++")
    seen: list[list[int]] = []

    @given(seed=st.integers(0, 2**16))
    @RTL_SETTINGS
    def examples(seed):
        seen.append(_run_verilator_example(verilator_builds[variant], tmp_path_factory.mktemp("v"), variant, seed))

    examples()
    # the examples reached the state's edge: the overflow policy acted in some layer
    assert any(sum(s) > 0 for s in seen), f"no example overflowed a membrane: {seen}"


@pytest.fixture(scope="module")
def fmnist_core(tmp_path_factory):
    dep = fmnist_deployable()
    if dep is None:
        pytest.skip("the shipped Fashion-MNIST model is not available")
    folder = tmp_path_factory.mktemp("fmnist") / "core"
    export(dep.graph, "verilog", folder, timesteps=3, golden=fmnist_images(2))
    return folder


@pytest.mark.rtl_heavy
def test_fmnist_int4_bit_exact_on_verilator_and_a_golden_mismatch_fails(fmnist_core):
    """The shipped int4 net (T = 3, 2 test images) runs bit-exactly; a flipped spike in golden.json fails make."""
    _need("verilator", "g++")
    stats = _assert_passes(fmnist_core)
    core = json.loads((fmnist_core / "core.json").read_text())
    assert len(stats["samples"]) == 2 and all(s["taps"] > 0 for s in stats["samples"])
    # cycles per image follow docs/fpga.md's formula from the golden rasters
    golden = json.loads((fmnist_core / "golden.json").read_text())
    for sample, measured in zip(golden["samples"], stats["samples"]):
        assert measured["cycles"] == cycles_formula(core, sample)
    data = json.loads((fmnist_core / "golden.json").read_text())
    step = data["samples"][0]["rasters"]["lif1"][1]  # early in the run, so the failing run is short
    step.remove(step[0]) if step else step.append(0)
    (fmnist_core / "golden.json").write_text(json.dumps(data))
    run = _make(fmnist_core, "test")
    assert run.returncode != 0
    assert "sample 0 layer lif1 step 1: spikes differ" in run.stdout


def cycles_formula(core: dict[str, Any], sample: dict[str, Any]) -> int:
    """Cycles of one image by docs/fpga.md (events: non-zero inputs, then each layer's spikes)."""
    layers, steps = core["layers"], core["timesteps"]
    in_n = int(np.prod(core["input"]["shape"]))
    frames = core["input"]["encoding"] == "frames"
    x = np.asarray(sample["input"]).reshape((steps if frames else 1), in_n)
    total = max(lay["neurons"] for lay in layers) + 2 + in_n * (steps if frames else 1) + 2 * core["outputs"]
    for t in range(steps):
        for k, lay in enumerate(layers):
            kept = lay["static_source"] and t > 0  # a static input's sums are computed at t = 0 only
            events = np.count_nonzero(x[t if frames else 0]) if k == 0 else len(sample["rasters"][layers[k - 1]["name"]][t])
            scatter = 0 if kept else 2 * lay["source_neurons"] + events * (lay["synapses_per_event"] + 1)
            total += 4 + scatter + 4 * lay["neurons"]
    return total


def test_cli_writes_the_core_folder_and_refuses_an_unsupported_graph(runner, tmp_path):
    """``export --format verilog`` writes the whole folder; a strided conv is refused with status 7."""
    from qsnn_deploy.app.cli import cli
    from qsnn_deploy.exporters.json_graph import export_graph_json

    graph = edge_graph(3, [_fields(VERILATOR_VARIANTS["saturate"][k]) for k in range(3)], 12)
    doc = export_graph_json(graph, tmp_path / "g.graph.json", target="int4-core", timesteps=4)
    res = runner.invoke(cli, ["export", str(doc), "--format", "verilog", "-o", str(tmp_path / "core")])
    assert res.exit_code == 0, res.output
    written = {p.name for p in (tmp_path / "core").iterdir()}
    assert {"qsnn_core.v", "qsnn_layer.v", "qsnn_up5k.v", "Makefile", "test_qsnn.py", "core.json", "layer2_weights.hex"} <= written
    assert "parameter" not in (tmp_path / "core" / "layer0_weights.hex").read_text()
    assert (tmp_path / "core" / "layer0_weights.hex").read_text().splitlines()[:9] == ["7"] * 9  # channel 0: all +7, 4-bit words

    conv = graph.nodes["conv"]
    strided = Graph.sequential(
        [(n, Conv2d(weight=conv.weight, stride=(2, 2), padding=(1, 1)) if n == "conv" else v) for n, v in graph.chain()][:4]
        + [("output", Output())]
    )
    res = runner.invoke(
        cli,
        [
            "export",
            str(export_graph_json(strided, tmp_path / "s.graph.json", target="int4-core", timesteps=4)),
            "--format",
            "verilog",
            "-o",
            str(tmp_path / "bad"),
        ],
    )
    assert res.exit_code == 7 and "stride (2, 2)" in res.output
    assert not (tmp_path / "bad").exists()


def _membrane_readout_graph(seed: int, arith: dict[str, Any], state_bits: int, frames: bool, steps: int) -> Graph:
    """edge_graph up to lif1, then the summing readout of passes/readout.py (27 features -> 4 scores)."""
    from qsnn_deploy.errors import TargetError
    from qsnn_deploy.passes.readout import membrane_readout

    graph = edge_graph(seed, [arith] * 3, state_bits, frames)
    rng = np.random.default_rng(seed + 1)
    weight = rng.integers(-7, 8, size=(4, 27))
    weight[0] = -7  # one class whose score only falls: negative membranes on the output stream
    bias = rng.integers(-20, 21, size=4)
    for shift in (2, 1, 0):
        try:
            return membrane_readout(graph, "lif1", weight, bias, shift, steps)
        except TargetError:
            continue
    raise AssertionError(f"no input shift fits a {state_bits}-bit state")


def test_membrane_readout_streams_v_bit_exact_on_icarus_and_a_wrong_score_fails(tmp_path_factory):
    """A non-spiking readout (sg-cvx / convex models): the core streams V[T-1], two's complement."""
    _need("iverilog", "vvp")
    negative: list[bool] = []

    @given(arith=ARITH, state_bits=st.integers(13, 20), seed=st.integers(0, 2**16), frames=st.booleans())
    @settings(max_examples=3, deadline=None, derandomize=True)
    def examples(arith, state_bits, seed, frames):
        graph = _membrane_readout_graph(seed, _fields(arith), state_bits, frames, 5)
        x = _inputs(graph, 2, seed, 5)
        scores = simulate(graph, x, 5).counts
        negative.append(bool((scores < 0).any()))
        folder = _export(graph, tmp_path_factory.mktemp("membrane") / "core", 5, x)
        core = json.loads((folder / "core.json").read_text())
        assert core["output"] == {"readout": "membrane", "bits": state_bits}
        assert f"output wire [{state_bits - 1}:0] out_data" in (folder / "qsnn_up5k.v").read_text()
        _assert_passes(folder, "SIM=icarus")
        golden = json.loads((folder / "golden.json").read_text())
        golden["samples"][1]["counts"][2] -= 1  # one score off by one: the testbench must see it
        (folder / "golden.json").write_text(json.dumps(golden))
        run = _make(folder, "test", "SIM=icarus", "QSNN_DEBUG=0")
        assert run.returncode != 0 and "outputs (membrane) differ" in run.stdout + run.stderr

    examples()
    assert any(negative), "no example streamed a negative score"


def test_a_membrane_output_not_right_after_its_lif_is_refused(tmp_path):
    from qsnn_deploy.errors import ExportError

    graph = _membrane_readout_graph(3, _fields(VERILATOR_VARIANTS["saturate"][0]), 16, False, 5)
    chain = graph.chain()
    moved = Graph.sequential([*chain[:-1], ("flatten_out", Flatten()), chain[-1]], graph.metadata, timesteps=graph.timesteps)
    with pytest.raises(ExportError, match="the Output must follow that LIF directly"):
        export(moved, "verilog", tmp_path / "core", timesteps=5)
    assert not (tmp_path / "core").exists()


@pytest.mark.parametrize("rounding", ["floor", "half_up"])
def test_widest_arithmetic_bit_exact_on_icarus(tmp_path, rounding):
    """A 48-bit state, decay_shift 30 and input_shift 40 (the IR's limits) through the RTL datapath."""
    _need("iverilog", "vvp")
    graph = make_graph(1, size=6, conv_channels=2, n_out=3, state_bits=48, decay_shift=30, beta=0.99, input_shift=40, rounding=rounding)
    folder = _export(graph, tmp_path / "core", 6, random_input(graph, 2, 5))
    golden = json.loads((folder / "golden.json").read_text())
    assert all(any(step for step in raster) for raster in golden["samples"][0]["rasters"].values()), "every layer must spike"
    _assert_passes(folder, "SIM=icarus")
