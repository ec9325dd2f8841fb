"""Golden vectors: inputs with what the bit-accurate simulator computes for them.

Shared by the exporters that carry test vectors. One sample holds the input, the output spike
counts, every LIF layer's total spikes, per-step spike rasters, optionally per-step membrane
traces, and where the input came from. The packed layouts are specified in docs/formats.md
("Golden vectors"); this module is their one implementation.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from qsnn_deploy.errors import ExportError, GraphError, QsnnError, TargetError
from qsnn_deploy.ir import CubaLIF, Graph, IntTensor
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.ir.tensor import MAX_ELEMENTS

#: most golden samples one document may carry
MAX_GOLDEN = 10_000


@dataclass(frozen=True)
class GoldenSource:
    """Where golden inputs came from: a data set's split and each sample's index in it."""

    dataset: str
    split: str
    indices: tuple[int, ...]


def pack_raster(spikes: np.ndarray) -> str:
    """One sample's (T, *shape) 0/1 spikes as base64 of their bits, MSB first (docs/formats.md).

    Bit ``t * N + n`` (N neurons, n in C order) is the spike of neuron n at step t; the last
    byte is padded with zero bits.
    """
    bits = np.asarray(spikes, dtype=np.uint8).reshape(-1)
    return base64.b64encode(np.packbits(bits, bitorder="big").tobytes()).decode("ascii")


def unpack_raster(text: str, timesteps: int, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_raster`: (T, *shape) uint8 spikes.

    Raises:
        GraphError: the text is not base64 of exactly ceil(T * N / 8) bytes.
    """
    n = timesteps * int(np.prod(shape))
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise GraphError(f"spike raster is not base64: {exc}") from None
    if len(raw) != (n + 7) // 8:
        raise GraphError(f"spike raster has {len(raw)} bytes, expected {(n + 7) // 8} for {timesteps} steps x {shape}")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n, bitorder="big")
    return bits.reshape((timesteps, *shape))


def trace_bytes(state: IntType) -> int:
    """Bytes per membrane value in a trace: the fewest whole bytes that hold the state type."""
    return (state.bits + 7) // 8


def pack_trace(values: np.ndarray, state: IntType) -> str:
    """One sample's (T, *shape) membranes as base64 of little-endian two's-complement words.

    Value ``t * N + n`` (N neurons, n in C order) is neuron n's membrane after step t, in
    :func:`trace_bytes` bytes, least significant byte first (docs/formats.md).
    """
    k = trace_bytes(state)
    v = np.asarray(values, dtype=np.int64).reshape(-1).astype("<i8").view(np.uint8).reshape(-1, 8)
    return base64.b64encode(np.ascontiguousarray(v[:, :k]).tobytes()).decode("ascii")


def unpack_trace(text: str, timesteps: int, shape: tuple[int, ...], state: IntType) -> np.ndarray:
    """Inverse of :func:`pack_trace`: (T, *shape) int64 membranes, checked to lie in ``state``.

    Raises:
        GraphError: not base64, the wrong length, or a value outside the state type.
    """
    k, n = trace_bytes(state), timesteps * int(np.prod(shape))
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise GraphError(f"membrane trace is not base64: {exc}") from None
    if len(raw) != n * k:
        raise GraphError(f"membrane trace has {len(raw)} bytes, expected {n * k} for {timesteps} steps x {shape} x {k} bytes")
    words = np.zeros((n, 8), np.uint8)
    words[:, :k] = np.frombuffer(raw, np.uint8).reshape(n, k)
    v = words.view("<u8").reshape(-1).astype(np.int64)
    v = np.where(v >= 1 << (8 * k - 1), v - (1 << (8 * k)), v) if k < 8 else v  # sign-extend k-byte words
    if not state.contains(v):
        raise GraphError(f"membrane trace holds values outside the state type {state.name}")
    return v.reshape((timesteps, *shape))


def golden_samples(
    graph: Graph, inputs: np.ndarray, timesteps: int | None, *, trace: bool = False, source: GoldenSource | None = None
) -> list[dict[str, Any]]:
    """Golden samples, JSON-ready: each input with the simulator's outputs (docs/formats.md).

    Args:
        graph: the frozen graph.
        inputs: (N, *input shape) static or (N, T, *input shape) frame inputs.
        timesteps: T.
        trace: also store every LIF layer's membrane after every step (``membrane_traces``).
        source: where the inputs came from; each sample records its data set, split and index.

    Raises:
        ExportError: bad T or inputs; TargetError: a membrane overflow under policy ``error``.
    """
    if timesteps is None:
        raise ExportError("golden vectors need timesteps")
    if any(isinstance(n, CubaLIF) for n in graph.nodes.values()):
        raise ExportError(
            "json golden vectors hold 0/1 spike rasters; a current-based (CubaLIF) graph spikes up to 31 times a step: use --format xylo --golden N"
        )
    node = graph.input
    x = np.asarray(inputs)
    expect = node.shape if node.encoding == "static" else (timesteps, *node.shape)
    if x.ndim != len(expect) + 1 or tuple(x.shape[1:]) != tuple(expect) or not 1 <= len(x) <= MAX_GOLDEN:
        raise ExportError(f"golden inputs must be (N, {', '.join(map(str, expect))}) with 1 <= N <= {MAX_GOLDEN}, got {x.shape}")
    if x.dtype.kind not in "iub" or not node.dtype.contains(x):
        raise ExportError(f"golden inputs must be integers within the input type {node.dtype.name}")
    try:
        from qsnn_deploy.sim import simulate
    except ImportError as exc:
        raise ExportError(f"golden vectors need the simulator (qsnn_deploy.sim): {exc}") from None
    try:
        res = simulate(graph, x.astype(np.int64), timesteps, backend="reference", record=True, trace=trace)
    except TargetError as exc:
        # a membrane overflow under overflow="error" is the model not fitting its target, not an
        # exporter limit: keep its class (exit status 6, docs/cli.md) and say where it happened
        raise TargetError(f"golden vectors: {exc}"[:400]) from None
    except QsnnError as exc:
        raise ExportError(f"golden vectors: the simulation failed: {exc}"[:400]) from None
    if source is not None and len(source.indices) != len(x):
        raise ExportError(f"golden source names {len(source.indices)} samples for {len(x)} inputs")
    counts = np.asarray(res.counts)
    layers = {name: np.asarray(v) for name, v in res.layer_spike_counts.items()}
    states = {name: node.state for name, node in graph.lif_layers()}
    samples = []
    for i in range(len(x)):
        sample = {
            "input": IntTensor(x[i], node.dtype).to_dict(),
            "output_counts": [int(c) for c in counts[i].ravel()],
            "layer_spike_counts": {name: int(v[i]) for name, v in layers.items()},
            "spike_rasters": {name: pack_raster(r[:, i]) for name, r in res.spikes.items()},
        }
        if res.membranes is not None:
            sample["membrane_traces"] = {name: pack_trace(v[:, i], states[name]) for name, v in res.membranes.items()}
        if source is not None:
            sample["source"] = {"dataset": source.dataset, "split": source.split, "index": int(source.indices[i])}
        samples.append(sample)
    return samples


def read_golden(graph: Graph, samples: list[dict[str, Any]], timesteps: int | None) -> list[dict[str, Any]]:
    """Golden samples as arrays, checked against the graph (shapes, names, count ranges)."""
    if timesteps is None:
        raise GraphError("golden vectors need timesteps")
    if len(samples) > MAX_GOLDEN:
        raise GraphError(f"more than {MAX_GOLDEN} golden samples")
    node = graph.input
    expect = node.shape if node.encoding == "static" else (timesteps, *node.shape)
    shapes = graph.shapes()
    lifs = {name: int(np.prod(shapes[name])) for name, _ in graph.lif_layers()}
    states = {name: node.state for name, node in graph.lif_layers()}
    out_name = next(n for n, v in graph.chain() if v.op == "Output")
    n_out = int(np.prod(shapes[out_name]))
    if n_out * timesteps > MAX_ELEMENTS * 64:
        raise GraphError("golden counts exceed the limits")
    out: list[dict[str, Any]] = []
    for i, s in enumerate(samples):
        x = IntTensor.from_dict(s["input"])  # checks the declared shape before allocating
        if x.shape != tuple(expect) or x.dtype != node.dtype:
            raise GraphError(f"golden[{i}].input must be {node.dtype.name} of shape {list(expect)}, got {x.dtype.name} {list(x.shape)}")
        counts = s["output_counts"]
        if len(counts) != n_out or max(counts, default=0) > timesteps:
            raise GraphError(f"golden[{i}].output_counts must be {n_out} counts of at most T={timesteps}")
        layer = s["layer_spike_counts"]
        if set(layer) != set(lifs) or any(layer[k] > lifs[k] * timesteps for k in lifs):
            raise GraphError(f"golden[{i}].layer_spike_counts must count the spikes of exactly the LIF layers {sorted(lifs)}"[:300])
        sample = {"input": x.values.copy(), "output_counts": np.array(counts, dtype=np.int64), "layer_spike_counts": dict(layer)}
        if "spike_rasters" in s:  # optional: absent in files written before it existed
            sample["spike_rasters"] = read_rasters(s["spike_rasters"], layer, shapes, timesteps, i)
        if "membrane_traces" in s:  # optional: only with --trace
            traces = s["membrane_traces"]
            if set(traces) != set(lifs):
                raise GraphError(f"golden[{i}].membrane_traces must hold exactly the LIF layers {sorted(lifs)}"[:300])
            sample["membrane_traces"] = {name: unpack_trace(text, timesteps, shapes[name], states[name]) for name, text in traces.items()}
        if "source" in s:
            sample["source"] = dict(s["source"])
        out.append(sample)
    return out


def read_rasters(rasters: dict[str, str], layer_counts: dict[str, int], shapes: dict, timesteps: int, i: int) -> dict[str, np.ndarray]:
    """A sample's spike rasters as (T, *shape) arrays, each agreeing with its layer's spike count."""
    if set(rasters) != set(layer_counts):
        raise GraphError(f"golden[{i}].spike_rasters must hold exactly the LIF layers {sorted(layer_counts)}"[:300])
    out = {name: unpack_raster(text, timesteps, shapes[name]) for name, text in rasters.items()}
    for name, raster in out.items():
        if int(raster.sum()) != layer_counts[name]:
            raise GraphError(
                f"golden[{i}].spike_rasters[{name!r}] has {int(raster.sum())} spikes, layer_spike_counts says {layer_counts[name]}"
            )
    return out


__all__ = [
    "MAX_GOLDEN",
    "GoldenSource",
    "golden_samples",
    "pack_raster",
    "pack_trace",
    "read_golden",
    "trace_bytes",
    "unpack_raster",
    "unpack_trace",
]
