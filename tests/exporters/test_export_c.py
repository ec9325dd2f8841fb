"""C export: gcc builds the generated C99 model, and it equals the simulator bit for bit.

The oracle is the compiled C program itself: ``make test`` runs the generated testbench on
``golden.bin`` (inputs, output counts and every layer's spikes at every step from
:func:`qsnn_deploy.sim.simulate`) and fails at the first difference. Builds use
``-std=c99 -Wall -Wextra -Werror`` at ``-O2`` and with AddressSanitizer + UBSan (every report
fatal), so undefined behaviour (signed overflow, negative shifts, out-of-bounds access) fails.
gcc is always installed here and in CI, so nothing skips.
"""

from __future__ import annotations

import dataclasses
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from graph_factory import fmnist_deployable, fmnist_images, make_graph, random_input
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qsnn_deploy.errors import ExportError, TargetError
from qsnn_deploy.exporters import export
from qsnn_deploy.exporters.c_export import GOLDEN_MAGIC, to_c_sources
from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Input, IntTensor, Linear, Output, SumPool2d
from qsnn_deploy.ir.arithmetic import NeuronArithmetic
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.sim import lif as lif_sim
from qsnn_deploy.sim import reference, simulate

STRICT = "-std=c99 -Wall -Wextra -Werror -O2"
SANITIZE = "-std=c99 -Wall -Wextra -Werror -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all"
WEIGHT = IntType(4, signed=True, narrow=True)


def _make(folder: Path, target: str, cflags: str) -> subprocess.CompletedProcess:
    assert shutil.which("gcc"), "gcc is required (it is installed wherever the tests run)"
    return subprocess.run(
        ["make", "-s", "-C", str(folder), target, "CC=gcc", f"CFLAGS={cflags}"], capture_output=True, text=True, timeout=300
    )


def _export_and_test(graph: Graph, x: np.ndarray, steps: int, folder: Path, flags: tuple[str, ...] = (SANITIZE,)) -> str:
    export(graph, "c", folder, timesteps=steps, golden=x)
    out = ""
    for cflags in flags:
        subprocess.run(["make", "-s", "-C", str(folder), "clean"], check=True)
        done = _make(folder, "test", cflags)
        assert done.returncode == 0, f"{cflags}:\n{done.stdout}\n{done.stderr}"
        out += done.stdout
    assert f"PASS {len(x)} samples x {steps} steps" in out
    return out


# --- the Fashion-MNIST int4 net (reduced T) --------------------------------------------------

FMNIST_T = 16
FMNIST_N = 3


@pytest.fixture(scope="module")
def fmnist_c(tmp_path_factory):
    """The shipped model exported with golden vectors and built once (-O2, -Werror)."""
    dep = fmnist_deployable()
    assert dep is not None, "the shipped model qsnn_deploy/assets/fmnist_int4.pt is missing"
    folder = tmp_path_factory.mktemp("fmnist") / "model_c"
    x = fmnist_images(FMNIST_N)
    export(dep.graph, "c", folder, target=dep.target, timesteps=FMNIST_T, golden=x)
    return dep, folder


def test_fmnist_c_model_is_bit_identical_under_strict_and_sanitized_builds(fmnist_c):
    _, folder = fmnist_c
    for cflags in (STRICT, SANITIZE):
        subprocess.run(["make", "-s", "-C", str(folder), "clean"], check=True)
        done = _make(folder, "test", cflags)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"PASS {FMNIST_N} samples x {FMNIST_T} steps" in done.stdout
        assert "runtime error" not in done.stderr  # UBSan would have aborted; belt and braces
    # the build used last (sanitized) is replaced by a strict one for the corruption tests
    subprocess.run(["make", "-s", "-C", str(folder), "clean"], check=True)
    assert _make(folder, "testbench", STRICT).returncode == 0


def _raster_offset(folder: Path, sample: int, layer: int, step: int, neuron: int) -> tuple[int, int]:
    """(byte offset, bit mask) of one spike in golden.bin (layout: c_export.golden_bytes)."""
    data = (folder / "golden.bin").read_bytes()
    assert data[:8] == GOLDEN_MAGIC
    samples, steps, values, width, outputs, layers = struct.unpack_from("<6I", data, 8)
    sizes = struct.unpack_from(f"<{layers}I", data, 32)
    rasters = [(steps * n + 7) // 8 for n in sizes]
    per_sample = values * width + 4 * outputs + sum(rasters)
    bit = step * sizes[layer] + neuron
    start = 32 + 4 * layers + sample * per_sample + values * width + 4 * outputs + sum(rasters[:layer])
    return start + bit // 8, 0x80 >> (bit % 8)


def test_one_corrupted_golden_spike_fails_make_test_naming_the_place(fmnist_c, tmp_path):
    _, folder = fmnist_c
    byte, mask = _raster_offset(folder, sample=2, layer=1, step=7, neuron=300)
    data = bytearray((folder / "golden.bin").read_bytes())
    data[byte] ^= mask
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    done = subprocess.run(["make", "-s", "-C", str(folder), "test", f"GOLDEN={bad}"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "MISMATCH sample 2 layer lif2 step 7 neuron 300" in done.stdout


def test_one_corrupted_golden_count_fails_naming_the_output(fmnist_c, tmp_path):
    _, folder = fmnist_c
    data = bytearray((folder / "golden.bin").read_bytes())
    _, _, values, width, outputs, layers = struct.unpack_from("<6I", data, 8)
    offset = 32 + 4 * layers + values * width + 4 * 4  # sample 0, output neuron 4
    data[offset] ^= 0x01
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    done = subprocess.run([str(folder / "testbench"), str(bad)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "MISMATCH sample 0 output neuron 4" in done.stdout


def test_generated_sources_are_deterministic_and_name_the_graph(fmnist_c):
    dep, folder = fmnist_c
    again = to_c_sources(dep.graph, timesteps=FMNIST_T, target=dep.target)
    for name, text in again.items():
        assert (folder / name).read_text() == text
        assert "graph sha256 " in text.splitlines()[0] or "graph sha256 " in text.splitlines()[2]
    # the model needs no C library at all (no malloc, no stdio): only <stdint.h>
    includes = [line for name in ("model.c", "model.h") for line in again[name].splitlines() if line.startswith("#include")]
    assert includes == ['#include "model.h"', "#include <stdint.h>"]


# --- hypothesis: small random graphs over every arithmetic variant ---------------------------

ARITHMETIC = st.fixed_dictionaries(
    {
        "state_bits": st.sampled_from([6, 8, 10, 16, 24, 48]),
        "decay_shift": st.sampled_from([0, 1, 5, 8, 16, 30]),
        "beta": st.floats(0.0, 1.0),
        "input_shift": st.integers(0, 6),
        # every choice of the neuron arithmetic (overflow "error" stops: its own test below)
        **{name: st.sampled_from([c for c in choices if c != "error"]) for name, choices in NeuronArithmetic.CHOICES.items()},
        "static": st.booleans(),
        "stride": st.sampled_from([1, 2]),
        "padding": st.sampled_from([0, 1]),
        "seed": st.integers(0, 2**16),
    }
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(params=ARITHMETIC)
def test_random_graphs_match_the_simulator_in_c(params, tmp_path):
    seed, static = params.pop("seed"), params.pop("static")
    graph = make_graph(seed, static, size=7, **params)
    steps = 10
    x = random_input(graph, 3, seed + 1, steps)
    _export_and_test(graph, x, steps, tmp_path / f"g{seed}")


@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_narrow_state_hits_the_limits_and_c_agrees(overflow, tmp_path):
    # an 8-bit membrane with 5 fraction bits overflows on most steps: the edge case itself
    graph = make_graph(3, True, state_bits=8, input_shift=5, decay_shift=4, beta=0.9, overflow=overflow)
    x = random_input(graph, 3, 4)
    res = simulate(graph, x, 12, backend="reference")
    assert sum(layer.saturations for layer in res.layers) > 100
    _export_and_test(graph, x, 12, tmp_path / "c", flags=(STRICT, SANITIZE))


def test_wide_state_uses_the_split_decay_and_agrees(tmp_path):
    # 48-bit state x 31-bit multiplier: V * M would leave int64, the C model splits V
    graph = make_graph(5, True, state_bits=48, decay_shift=30, beta=0.999, input_shift=30)
    assert "qsnn_decay_split(" in to_c_sources(graph, timesteps=8)["model.c"]
    _export_and_test(graph, random_input(graph, 2, 6), 8, tmp_path / "c")


def test_overflow_error_stops_the_c_model_where_the_simulator_stops(tmp_path):
    # a 16-bit membrane that first overflows at step 1 (the leak of step 0 carries it over)
    graph = make_graph(3, True, state_bits=16, input_shift=1, decay_shift=4, beta=0.9, overflow="error")
    x = random_input(graph, 1, 4)
    with pytest.raises(TargetError) as err:
        simulate(graph, x, 12, backend="reference")
    step = int(str(err.value).rsplit("at step ", 1)[1])
    assert step > 0
    layer = str(err.value).split("'")[1]
    # golden vectors from the saturating twin: identical until the first overflow
    twin = Graph({n: dataclasses.replace(v, overflow="saturate") if isinstance(v, LIF) else v for n, v in graph.nodes.items()}, graph.edges)
    export(twin, "c", tmp_path / "c", timesteps=12, golden=x)
    sources = to_c_sources(graph, timesteps=12)
    (tmp_path / "c" / "model.c").write_text(sources["model.c"])
    done = _make(tmp_path / "c", "test", SANITIZE)
    assert done.returncode != 0
    assert f"MODEL ERROR sample 0 step {step}: layer {layer} overflowed" in done.stdout


# --- every node type in other arrangements -------------------------------------------------


def _calibrated(nodes: list[tuple[str, object]], x: np.ndarray, steps: int, state: IntType, **lif_kw) -> Graph:
    """A chain of ``nodes`` (LIF entries as None) whose LIF thresholds make each layer fire.

    Each threshold is the 80 % quantile of the layer's first-step currents (A << F), so the
    rasters hold both spikes and silences; the calibration runs the simulator's own step.
    """
    built: list[tuple[str, object]] = []
    values = [x] * steps if x.ndim == 4 or x.ndim == 2 else [x[:, t] for t in range(steps)]
    shift = lif_kw.get("input_shift", 0)
    for name, node in nodes:
        if node is not None:
            built.append((name, node))
            if not isinstance(node, (Input, Output)):
                values = [reference.apply_node(node, v) for v in values]
            continue
        a = np.stack(values)  # (T, B, C, ...)
        per_channel = np.moveaxis(a[0] << shift, 1, 0).reshape(a.shape[2], -1)
        thr = np.clip(np.quantile(per_channel, 0.8, axis=1).astype(np.int64), 1, state.max)
        neuron = LIF(threshold=IntTensor(thr, state), bias=IntTensor(np.zeros_like(thr), state), state=state, **lif_kw)
        built.append((name, neuron))
        params, run = lif_sim.LIFParams.from_node(neuron, name), lif_sim.initial_state(a.shape[1:])
        values = []
        for at in a:
            s, run = lif_sim.step(at, run, params)
            values.append(s)
    return Graph.sequential(built)


def _weights(rng: np.random.Generator, *shape: int) -> IntTensor:
    return IntTensor(rng.integers(-7, 8, size=shape), WEIGHT)


def _structures(rng: np.random.Generator) -> dict[str, tuple[list, IntType, bool]]:
    u8, u1 = IntType(8, signed=False), IntType(1, signed=False)
    i4 = IntType(4)
    return {
        # a LIF fed by a conv directly (channels-last sums), a strided padded conv on spikes
        "conv_lif_conv": (
            [
                ("in", Input(shape=(2, 7, 7), dtype=u8)),
                ("c1", Conv2d(weight=_weights(rng, 3, 2, 3, 3), padding=(1, 1))),
                ("l1", None),
                ("c2", Conv2d(weight=_weights(rng, 4, 3, 3, 2), stride=(2, 1), padding=(1, 0))),
                ("p2", SumPool2d(kernel=(2, 3), stride=(1, 2))),
                ("l2", None),
                ("f", Flatten()),
                ("out", Output()),
            ],
            u8,
            True,
        ),
        # conv -> conv -> flatten -> linear with no LIF between (a flatten of channels-last sums), signed frames
        "conv_conv_linear": (
            [
                ("in", Input(shape=(1, 6, 6), dtype=i4, encoding="frames")),
                ("c1", Conv2d(weight=_weights(rng, 2, 1, 2, 2))),
                ("c2", Conv2d(weight=_weights(rng, 3, 2, 3, 3), stride=(2, 2))),
                ("f", Flatten()),
                ("fc", Linear(weight=_weights(rng, 5, 12))),
                ("l1", None),
                ("out", Output()),
            ],
            i4,
            False,
        ),
        # 0/1 events into a dense layer (event-driven from the input itself)
        "events_linear": (
            [
                ("in", Input(shape=(40,), dtype=u1)),
                ("fc1", Linear(weight=_weights(rng, 16, 40))),
                ("l1", None),
                ("fc2", Linear(weight=_weights(rng, 4, 16))),
                ("l2", None),
                ("out", Output()),
            ],
            u1,
            True,
        ),
    }


@pytest.mark.parametrize("kind", ["conv_lif_conv", "conv_conv_linear", "events_linear"])
def test_other_chains_match_the_simulator_in_c(kind, tmp_path):
    rng = np.random.default_rng(7)
    nodes, in_type, static = _structures(rng)[kind]
    steps = 9
    inp = nodes[0][1]
    shape = (4, *inp.shape) if static else (4, steps, *inp.shape)
    x = rng.integers(in_type.min, in_type.max + 1, size=shape)
    lif_kw = dict(decay_mul=200, decay_shift=8, input_shift=2, reset="zero", reset_timing="immediate", compare="ge")
    graph = _calibrated(nodes, x, steps, IntType(16), **lif_kw)
    res = simulate(graph, x, steps, backend="reference", record=True)
    for name, spikes in res.spikes.items():
        assert 0 < spikes.mean() < 1, f"{name} is degenerate: the test would prove little"
    _export_and_test(graph, x, steps, tmp_path / kind)


# --- the CLI, atomic output and refusals ------------------------------------------------------


def test_cli_export_c_writes_the_folder_and_replaces_it_only_with_force(runner, tmp_path):
    from qsnn_deploy.app.cli import cli
    from qsnn_deploy.exporters.json_graph import export_graph_json

    graph = make_graph(11, True, size=28, conv_channels=2)  # 28 x 28 pixels, as the synthetic data set's
    model = export_graph_json(graph, tmp_path / "g.graph.json", target="int4-core", timesteps=6)
    out = tmp_path / "model_c"
    args = ["export", str(model), "--format", "c", "-o", str(out), "--data", "synthetic", "--golden", "2"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.iterdir()) == ["Makefile", "golden.bin", "golden_source.txt", "model.c", "model.h", "testbench.c"]
    assert (out / "golden_source.txt").read_text().startswith("sample 0: synthetic test ")
    again = runner.invoke(cli, args)
    assert again.exit_code == 8 and "--force" in again.output
    (out / "stale.txt").write_text("left over")
    forced = runner.invoke(cli, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folders left
    assert _make(out, "test", STRICT).returncode == 0


def test_refusals_are_export_errors_and_write_nothing(tmp_path):
    graph = make_graph(12, True)
    with pytest.raises(ExportError, match="timesteps"):
        export(graph, "c", tmp_path / "a")
    wide = Graph.sequential(
        [
            ("in", Input(shape=(3,), dtype=IntType(40, signed=False))),
            ("fc", Linear(weight=IntTensor(np.ones((2, 3), np.int64), WEIGHT))),
            (
                "l",
                LIF(
                    threshold=IntTensor(np.ones(2, np.int64), IntType(24)),
                    bias=IntTensor(np.zeros(2, np.int64), IntType(24)),
                    decay_mul=1,
                    decay_shift=0,
                    state=IntType(24),
                ),
            ),
            ("out", Output()),
        ]
    )
    with pytest.raises(ExportError, match="wider than 32 bits"):
        export(wide, "c", tmp_path / "b", timesteps=4)
    assert list(tmp_path.iterdir()) == []


def test_input_values_outside_the_input_type_are_clipped_to_it(tmp_path):
    # UINT2 event frames held in uint8_t: the C model clips 0..255 to 0..3 (the simulator refuses them)
    graph = make_graph(13, False)
    steps = 6
    raw = np.random.default_rng(14).integers(0, 256, size=(1, steps, *graph.input.shape))
    export(graph, "c", tmp_path, timesteps=steps)
    values = ", ".join(str(int(v)) for v in raw.reshape(-1))
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "model.h"\n'
        f"static const qsnn_input_t raw[QSNN_SAMPLE_SIZE] = {{{values}}};\n"
        "int main(void) {\n    uint32_t counts[QSNN_OUTPUT_SIZE];\n    int n;\n"
        "    if (qsnn_run(raw, counts) != QSNN_OK) return 1;\n"
        '    for (n = 0; n < QSNN_OUTPUT_SIZE; n++) printf("%lu\\n", (unsigned long)counts[n]);\n    return 0;\n}\n'
    )
    exe = tmp_path / "main"
    subprocess.run(["gcc", *SANITIZE.split(), "-o", str(exe), str(tmp_path / "main.c"), str(tmp_path / "model.c")], check=True)
    counts = [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
    expected = simulate(graph, np.minimum(raw, 3), steps, backend="reference").counts[0]
    assert counts == expected.tolist() and sum(counts) > 0


def test_any_node_names_give_valid_c(tmp_path):
    # names are free text in the graph JSON: comment closers, quotes, trigraphs, non-ASCII, digits first
    graph = make_graph(15, True)
    names = {"input": "in", "conv1": "1conv*/", "pool1": 'p"o\\ol??/', "lif1": "lif é */ x", "flatten": "f", "fc": "fc", "lif2": "lif-2"}
    names["output"] = "out"
    renamed = Graph({names[n]: v for n, v in graph.nodes.items()}, tuple((names[a], names[b]) for a, b in graph.edges))
    out = _export_and_test(renamed, random_input(renamed, 2, 16), 5, tmp_path / "c", flags=(STRICT,))
    assert "PASS 2 samples" in out
    assert 'qsnn_layer_names[QSNN_NUM_LAYERS] = {"lif \\303\\251 */ x", "lif-2"}' in (tmp_path / "c" / "model.c").read_text()


def test_a_failed_folder_write_leaves_the_previous_folder_as_it_was(tmp_path):
    from qsnn_deploy.atomic import atomic_directory

    dest = tmp_path / "model_c"
    dest.mkdir()
    (dest / "model.c").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(dest) as tmp:
            (tmp / "model.c").write_text("half")
            raise RuntimeError("writer failed")
    assert (dest / "model.c").read_text() == "old"
    graph = make_graph(17, True)
    with pytest.raises(ExportError, match="golden inputs"):
        export(graph, "c", dest, timesteps=4, golden=np.zeros((2, 1, 3, 3), np.int64))  # wrong shape
    assert [p.name for p in tmp_path.iterdir()] == ["model_c"] and (dest / "model.c").read_text() == "old"
