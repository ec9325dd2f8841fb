"""Same inputs, same bits: across runs and processes, batch sizes, torch/Numba thread counts,
simulator backends, and the exported models in ONNX Runtime and QONNX. And the state
overflow policies at their exact edges, through :func:`qsnn_deploy.sim.simulate`.

Everything runs on small graphs from ``graph_factory`` (T = 6), compared by a SHA-256
fingerprint of every output bit: counts, predictions, per-layer spike counts, recorded
spikes of every layer at every step, and the per-layer statistics.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from graph_factory import make_graph, random_input
from oracles import oracle_run

from qsnn_deploy.errors import TargetError
from qsnn_deploy.ir import LIF, Graph, Input, IntTensor, Output
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.sim import SimResult, simulate, simulate_split

T = 6
BATCH = 6
ROOT = Path(__file__).resolve().parents[2]


def fast_available() -> bool:
    from qsnn_deploy.sim import fast

    return fast.available()


needs_fast = pytest.mark.skipif(not fast_available(), reason="fast backend needs torch and numba")


@functools.cache
def graph(static: bool = True) -> Graph:
    return make_graph(4, static, size=8, conv_channels=4, n_out=6)


def inputs(static: bool = True) -> np.ndarray:
    return random_input(graph(static), BATCH, 17, T)


def fingerprint(res: SimResult) -> str:
    """SHA-256 of every bit of a result (the backend name aside)."""
    h = hashlib.sha256()
    for arr in (res.counts, res.predictions):
        a = np.ascontiguousarray(arr, dtype=np.int64)
        h.update(repr(a.shape).encode() + a.tobytes())
    for name in sorted(res.layer_spike_counts):
        h.update(name.encode() + np.ascontiguousarray(res.layer_spike_counts[name], dtype=np.int64).tobytes())
    for name in sorted(res.spikes or {}):
        s = np.ascontiguousarray(res.spikes[name], dtype=np.uint8)
        h.update(name.encode() + repr(s.shape).encode() + s.tobytes())
    h.update(repr(res.layers).encode())
    return h.hexdigest()


def run(static: bool = True, backend: str = "reference", x: np.ndarray | None = None) -> SimResult:
    return simulate(graph(static), inputs(static) if x is None else x, T, backend=backend, record=True)


BACKENDS = ["reference", pytest.param("fast", marks=needs_fast)]


# --- runs, processes, batches, threads, backends ----------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("static", [True, False], ids=["static", "frames"])
def test_repeated_runs_are_identical(static: bool, backend: str) -> None:
    first = fingerprint(run(static, backend))
    assert all(fingerprint(run(static, backend)) == first for _ in range(2))
    assert run(static, backend).counts.sum() > 0  # something to compare: the graph spikes


CHILD = r"""
import sys
sys.path[:0] = sys.argv[1:4]
import test_determinism as d
print(d.fingerprint(d.run(True, "fast" if d.fast_available() else "reference")))
"""


def test_a_fresh_process_with_another_hash_seed_gives_the_same_bits() -> None:
    env = {**os.environ, "PYTHONHASHSEED": "12345", "QSNN_DEPLOY_NO_REEXEC": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / "tests" / "sim"), str(ROOT / "tests"), str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    backend = "fast" if fast_available() else "reference"
    assert out.stdout.strip().splitlines()[-1] == fingerprint(run(True, backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("static", [True, False], ids=["static", "frames"])
def test_one_sample_at_a_time_equals_the_batch(static: bool, backend: str) -> None:
    x = inputs(static)
    whole = run(static, backend, x)
    singles = [run(static, backend, x[i : i + 1]) for i in range(len(x))]
    assert np.array_equal(np.concatenate([s.counts for s in singles]), whole.counts)
    assert np.array_equal(np.concatenate([s.predictions for s in singles]), whole.predictions)
    for name, spikes in whole.spikes.items():
        assert np.array_equal(np.concatenate([s.spikes[name] for s in singles], axis=1), spikes)
    totals = singles[0].layers
    for s in singles[1:]:
        totals = [a.merged(b) for a, b in zip(totals, s.layers)]
    assert totals == whole.layers
    # and simulate_split with an uneven batch size
    y = np.zeros(len(x), np.int64)
    split = simulate_split(graph(static), x, y, T, batch_size=4, backend=backend, progress=False)
    assert np.array_equal(split.counts, whole.counts) and split.layers == whole.layers


@needs_fast
def test_thread_counts_do_not_change_the_bits() -> None:
    import numba
    import torch

    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    results = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            results[threads] = {static: fingerprint(run(static, "fast")) for static in (True, False)}
    finally:
        torch.set_num_threads(torch_before)
        numba.set_num_threads(numba_before)
    assert results[1] == results[2]
    assert torch.get_num_threads() == torch_before and numba.get_num_threads() == numba_before


@needs_fast
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"reset": "zero", "compare": "ge"},
        {"reset_timing": "immediate", "rounding": "floor"},
        {"state_bits": 12, "input_shift": 0},
        {"state_bits": 12, "input_shift": 0, "overflow": "wrap"},
    ],
    ids=["default", "zero-ge", "immediate-floor", "saturating", "wrapping"],
)
def test_backends_give_identical_bits(options: dict) -> None:
    g = make_graph(6, **options)
    x = random_input(g, BATCH, 2, T)
    ref = simulate(g, x, T, backend="reference", record=True)
    fst = simulate(g, x, T, backend="fast", record=True)
    assert fst.backend == "fast" and fingerprint(ref) == fingerprint(fst)
    naive_counts, naive_spikes = oracle_run(g, x, T)  # the independent loop agrees too
    assert np.array_equal(naive_counts, ref.counts)
    assert all(np.array_equal(naive_spikes[k], ref.spikes[k]) for k in naive_spikes)


# --- exported models ------------------------------------------------------------------------------


@pytest.mark.parametrize("unroll", [False, True], ids=["step", "unrolled"])
def test_onnxruntime_gives_the_simulator_bits_every_time(unroll: bool) -> None:
    pytest.importorskip("onnxruntime")
    from qsnn_deploy.exporters.onnx_plain import run_onnx, to_onnx

    ref = run(False)
    model = to_onnx(graph(False), timesteps=T, unroll=unroll)
    outs = [run_onnx(model, inputs(False), T) for _ in range(2)]
    whole_counts, whole_spikes = outs[0]
    for counts, spikes in outs:
        assert np.array_equal(counts, ref.counts)
        assert spikes.keys() == ref.spikes.keys() and all(np.array_equal(spikes[k], ref.spikes[k]) for k in spikes)
    # batch of one, sample by sample
    singles = [run_onnx(model, inputs(False)[i : i + 1], T)[0] for i in range(BATCH)]
    assert np.array_equal(np.concatenate(singles), whole_counts)


def _run_qonnx_steps(model, x: np.ndarray, static: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Drive a QONNX step model with qonnx's execute_onnx for T steps from a zero state."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from qsnn_deploy.exporters._onnx_time import drive_step_model

    wrapper = ModelWrapper(model)
    contract = json.loads({p.key: p.value for p in wrapper.model.metadata_props}["qsnn_deploy"])
    if (contract["encoding"] == "static") != static:
        raise AssertionError("encoding mismatch")
    return drive_step_model(lambda feeds: execute_onnx(wrapper, feeds), contract, x, T, x_dtype=np.float32)


def test_qonnx_execution_gives_the_simulator_bits_every_time() -> None:
    pytest.importorskip("qonnx")
    from qsnn_deploy.exporters.qonnx_export import to_qonnx

    x = inputs(True)[:2]
    ref = run(True, x=x)
    model = to_qonnx(graph(True), batch=2)
    first = _run_qonnx_steps(model, x, True)
    for counts, spikes in (first, _run_qonnx_steps(model, x, True)):
        assert np.array_equal(counts, ref.counts)
        assert all(np.array_equal(spikes[k], ref.spikes[k]) for k in ref.spikes)


# --- overflow policies at the edges of a narrow state -----------------------------------------------

STATE = IntType(8)  # [-128, 127]


def narrow_lif_graph(overflow: str) -> Graph:
    """INT8 frames straight into one INT8-state LIF: V[t] = V[t-1] + x[t], spike if V > 120.

    No leak (decay 1), no shift, no bias; the delayed subtract reset keeps V where the test
    wants it until the step after a spike.
    """
    return Graph.sequential(
        [
            ("input", Input(shape=(1,), dtype=IntType(8), encoding="frames")),
            (
                "narrow",
                LIF(
                    threshold=IntTensor.of([120], STATE),
                    bias=IntTensor.of([0], STATE),
                    decay_mul=1,
                    decay_shift=0,
                    state=STATE,
                    overflow=overflow,
                ),
            ),
            ("output", Output()),
        ]
    )


# (inputs over 3 steps, spikes under saturate, spikes under wrap, overflowing neuron-steps)
EDGES = {
    "just-below-threshold": ([100, 20, 0], 0, 0, 0),
    "exactly-max": ([100, 27, 0], 1, 1, 0),  # V = 127 = max: no overflow
    "max-plus-one": ([100, 28, 0], 1, 0, 1),  # 128: saturates to 127 (spikes) or wraps to -128
    "far-beyond-max": ([100, 100, 0], 1, 0, 1),  # 200: 127, or -56
    "exactly-min": ([-100, -28, 0], 0, 0, 0),  # V = -128 = min
    "min-minus-one": ([-100, -29, 0], 0, 1, 1),  # -129: saturates to -128, or wraps to 127 and spikes
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(EDGES))
def test_overflow_policies_at_the_edges(case: str, backend: str) -> None:
    seq, sat_spikes, wrap_spikes, overflows = EDGES[case]
    x = np.array(seq, np.int64).reshape(1, 3, 1)
    for policy, spikes in (("saturate", sat_spikes), ("wrap", wrap_spikes)):
        g = narrow_lif_graph(policy)
        res = simulate(g, x, 3, backend=backend)
        assert int(res.counts.sum()) == spikes, policy
        assert res.layers[0].saturations == overflows, policy  # counted for both policies
        naive, _ = oracle_run(g, x, 3)
        assert np.array_equal(naive, res.counts)
    g = narrow_lif_graph("error")
    if overflows:
        with pytest.raises(TargetError, match=r"layer 'narrow'.*INT8 \[-128, 127\].*'error'"):
            simulate(g, x, 3, backend=backend)
    else:
        assert int(simulate(g, x, 3, backend=backend).counts.sum()) == sat_spikes


@pytest.mark.parametrize("backend", BACKENDS)
def test_overflow_counts_add_up_over_a_batch(backend: str) -> None:
    cases = sorted(EDGES)
    x = np.array([EDGES[c][0] for c in cases], np.int64).reshape(len(cases), 3, 1)
    for policy, col in (("saturate", 1), ("wrap", 2)):
        res = simulate(narrow_lif_graph(policy), x, 3, backend=backend)
        assert res.counts.ravel().tolist() == [EDGES[c][col] for c in cases]
        assert res.layers[0].saturations == sum(EDGES[c][3] for c in cases)
    with pytest.raises(TargetError, match="layer 'narrow'"):  # one overflowing sample stops the batch
        simulate(narrow_lif_graph("error"), x, 3, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_saturating_graph_counts_saturations_on_a_real_graph(backend: str) -> None:
    """The factory graph with a 12-bit state: saturate and wrap both act and differ; error stops."""
    results = {}
    for policy in ("saturate", "wrap"):
        g = make_graph(5, state_bits=12, input_shift=0, overflow=policy)
        x = random_input(g, 4, 0)
        results[policy] = simulate(g, x, T, backend=backend, record=True)
        assert results[policy].layers[0].saturations > 0 and results[policy].counts.sum() > 0
        naive_counts, naive_spikes = oracle_run(g, x, T)
        assert np.array_equal(naive_counts, results[policy].counts)
        assert all(np.array_equal(naive_spikes[k], results[policy].spikes[k]) for k in naive_spikes)
    assert not np.array_equal(results["saturate"].spikes["lif1"], results["wrap"].spikes["lif1"])
    g = make_graph(5, state_bits=12, input_shift=0, overflow="error")
    with pytest.raises(TargetError, match=r"layer 'lif\d'"):
        simulate(g, random_input(g, 4, 0), T, backend=backend)
