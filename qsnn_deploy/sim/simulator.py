r"""Public simulation API: :func:`simulate` one batch, :func:`simulate_split` a data set.

Both backends (:mod:`.reference` and :mod:`.fast`) return the same raw counts for a batch;
this module checks the inputs, proves that int64 holds every synaptic sum, picks the backend
and derives the statistics. Counting definitions (per LIF layer; a layer's synaptic nodes
are the Conv2d/Linear nodes between the previous LIF, or the Input, and it):

- **spikes**: spikes the LIF layer emits, summed over samples and steps.
- **synops**: one synaptic operation per (event, connection): the sum over every input
  spike (a 0/1 event entering a synaptic node) of its real fan-out. For a Linear node the
  fan-out is ``out_features``; for a Conv2d it is border-aware: an event at input pixel
  (i, h, w) reaches ``out_channels x n_rows(h) x n_cols(w)`` targets, where n_rows(h) counts
  the output rows whose receptive field (with stride and padding) contains row h. Events are
  the spikes of the previous LIF layer (through a Flatten), or the Input values when its type
  is UINT1 (a 0/1 input is re-presented at every step, so it is counted at every step).
- **dense_macs**: multiply-accumulates of a synaptic node whose input is not 0/1 events
  (the 8-bit image): ``O x OH x OW x I x KH x KW`` for a Conv2d, ``O x I`` for a Linear,
  counted once per sample when the node only sees a ``static`` input (the first layer of an
  image is computed once), else once per sample and step.
- **saturations**: neuron-steps at which the state overflow policy clipped or wrapped V.
- **accumulator_overflows**: neuron-steps whose synaptic sum A (after pooling, before the
  input shift) lies outside ``target.accumulator``; counted when a target is given, never
  altered (the simulation keeps the exact value).
- memory: ``weight_bits`` = weights x their type's bits (all synaptic nodes of the layer),
  ``state_bits`` = neurons x state bits, ``param_bits`` = 2 (threshold, bias) x channels x
  state bits; ``memory_bits`` is their sum.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from qsnn_deploy.analysis.bounds import magnitudes
from qsnn_deploy.errors import GraphError, QsnnError, TargetError
from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Input, Linear
from qsnn_deploy.sim import cuba_chain, reference
from qsnn_deploy.targets import TargetProfile

BACKENDS = ("auto", "fast", "reference")
#: largest |value| any int64 sum may reach (2^62 leaves room for the LIF's additions)
INT64_SAFE = 2.0**62


@dataclass(frozen=True)
class LayerStats:
    """Counts and memory of one LIF layer (see the module docstring for each definition)."""

    name: str  # the LIF node's
    op: str  # the nodes of the layer, from after the previous LIF: e.g. "Conv2d+SumPool2d+LIF"
    neurons: int  # per sample
    spikes: int = 0
    synops: int = 0
    dense_macs: int = 0
    saturations: int = 0
    accumulator_overflows: int = 0
    weight_bits: int = 0
    state_bits: int = 0
    param_bits: int = 0

    @property
    def memory_bits(self) -> int:
        return self.weight_bits + self.state_bits + self.param_bits

    def merged(self, other: LayerStats) -> LayerStats:
        """Counts summed with ``other``'s (another batch of the same layer); memory unchanged."""
        if other.name != self.name:
            raise QsnnError(f"cannot merge stats of layer {other.name!r} into {self.name!r}")
        counted = ("spikes", "synops", "dense_macs", "saturations", "accumulator_overflows")
        return dataclasses.replace(self, **{k: getattr(self, k) + getattr(other, k) for k in counted})


@dataclass(frozen=True)
class SimResult:
    """One simulated batch."""

    counts: np.ndarray  # (B, n_out) int64 output spike counts over T
    predictions: np.ndarray  # (B,) argmax of counts, lowest index on ties
    layers: list[LayerStats]  # one per LIF layer, in chain order
    layer_spike_counts: dict[str, np.ndarray]  # LIF name -> (B,) spikes per sample over T
    spikes: dict[str, np.ndarray] | None = None  # if record: LIF name -> (T, B, *shape) uint8
    backend: str = "reference"  # the backend that ran
    membranes: dict[str, np.ndarray] | None = None  # if trace: LIF name -> (T, B, *shape) int64 V[t]


@dataclass(frozen=True)
class SplitReport:
    """A whole split, simulated batch by batch."""

    samples: int
    correct: int
    timesteps: int
    layers: list[LayerStats]  # totals over all samples
    predictions: np.ndarray  # (N,)
    counts: np.ndarray  # (N, n_out)
    backend: str = "reference"

    @property
    def accuracy(self) -> float:
        return self.correct / self.samples if self.samples else 0.0


# --- the graph as the simulator sees it -----------------------------------------------------


@dataclass(frozen=True)
class _SynapticNode:
    name: str
    node: Conv2d | Linear
    in_shape: tuple[int, ...]
    source: str | None  # LIF name (or "input") whose 0/1 events feed it, None if dense
    static: bool  # sees only a static input (computed once per sample)


@dataclass(frozen=True)
class _Layer:
    name: str
    node: LIF
    shape: tuple[int, ...]
    synaptic: tuple[_SynapticNode, ...]
    ops: str  # the nodes from the previous LIF to this one, e.g. "Conv2d+SumPool2d+LIF"


def _fan_out_1d(size: int, kernel: int, stride: int, pad: int, out: int) -> np.ndarray:
    """n[h] = number of outputs y in [0, out) with 0 <= h + pad - y * stride < kernel."""
    n = np.zeros(size, np.int64)
    for y in range(out):
        lo = y * stride - pad
        n[max(lo, 0) : max(min(lo + kernel, size), 0)] += 1
    return n


def fan_out(node: Conv2d | Linear, in_shape: tuple[int, ...]) -> np.ndarray:
    """Connections leaving each input position of ``node`` (shape ``in_shape``), border-aware."""
    if isinstance(node, Linear):
        return np.full(in_shape, node.weight.shape[0], np.int64)
    o, _, kh, kw = node.weight.shape
    _, oh, ow = node.output_shape(in_shape)
    rows = _fan_out_1d(in_shape[1], kh, node.stride[0], node.padding[0], oh)
    cols = _fan_out_1d(in_shape[2], kw, node.stride[1], node.padding[1], ow)
    return np.broadcast_to(o * np.outer(rows, cols), in_shape).copy()


def dense_macs(node: Conv2d | Linear, in_shape: tuple[int, ...]) -> int:
    """MACs of one evaluation of ``node`` on one sample, padding included."""
    if isinstance(node, Linear):
        return int(np.prod(node.weight.shape))
    _, oh, ow = node.output_shape(in_shape)
    return int(oh * ow * np.prod(node.weight.shape))


def _layers(graph: Graph) -> tuple[list[_Layer], str]:
    """LIF layers with their synaptic nodes, and the name of the LIF the Output counts."""
    chain = graph.chain()
    shapes = graph.shapes()
    inp = graph.input
    layers: list[_Layer] = []
    pending: list[_SynapticNode] = []
    # who produces 0/1 events into the next node: a LIF (through Flatten), or a UINT1 input
    events: str | None = "input" if (not inp.dtype.signed and inp.dtype.bits == 1) else None
    static = inp.encoding == "static"
    prev = chain[0][0]
    ops: list[str] = []
    for name, node in chain[1:-1]:
        ops.append(node.op)
        if isinstance(node, (Conv2d, Linear)):
            pending.append(_SynapticNode(name, node, shapes[prev], events, static))
            events = None
        elif isinstance(node, LIF):
            layers.append(_Layer(name, node, shapes[name], tuple(pending), "+".join(ops)))
            pending, events, static, ops = [], name, False, []
        elif not isinstance(node, Flatten):
            events = None  # a pool turns events into counts
        prev = name
    tail = [n for n in chain[1:-1] if not isinstance(n[1], Flatten)]
    if not layers or pending or not isinstance(tail[-1][1], LIF):
        raise GraphError("the Output must be fed by a LIF layer (optionally through a Flatten): it counts spikes")
    return layers, layers[-1].name


def check_int64_range(graph: Graph) -> None:
    """Raise unless every synaptic sum of ``graph`` provably fits int64 (|sum| < 2^62)."""
    for name, bound in magnitudes(graph).items():
        if bound >= INT64_SAFE:
            raise TargetError(f"layer {name!r}: worst-case synaptic sum {float(bound):.3g} does not fit the simulator's int64")


# --- the API --------------------------------------------------------------------------------


def _check_input(graph: Graph, x: Any, timesteps: int, target: TargetProfile | None) -> np.ndarray:
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)) or timesteps < 1:
        raise QsnnError(f"timesteps must be an integer >= 1, got {timesteps!r}")
    inp: Input = graph.input
    x = np.asarray(x)
    want = inp.shape if inp.encoding == "static" else (int(timesteps), *inp.shape)
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != tuple(want):
        what = "(B, *shape)" if inp.encoding == "static" else "(B, T, *shape)"
        raise GraphError(f"input must be {what} = (B, {', '.join(map(str, want))}) for a {inp.encoding} Input, got {x.shape}")
    if x.shape[0] < 1:
        raise QsnnError("input batch is empty")
    if x.dtype.kind not in "iub":
        raise GraphError(f"input must hold integers, got dtype {x.dtype}")
    lo, hi = int(x.min()), int(x.max())
    if not inp.dtype.contains(np.array([lo, hi])):
        raise GraphError(f"input values [{lo}, {hi}] lie outside the Input type {inp.dtype.name} [{inp.dtype.min}, {inp.dtype.max}]")
    if target is not None and not target.input.contains(np.array([lo, hi])):
        raise TargetError(f"input values [{lo}, {hi}] lie outside target {target.name}'s input type {target.input.name}")
    return x.astype(np.int64, copy=False)


def _backend(backend: str) -> Any:
    if backend not in BACKENDS:
        raise QsnnError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "reference":
        return reference
    from qsnn_deploy.sim import fast

    if fast.available():
        return fast
    if backend == "fast":
        raise QsnnError(f"the fast backend needs torch and numba: {fast.unavailable_reason()}")
    return reference


def simulate(
    graph: Graph,
    x: np.ndarray,
    timesteps: int,
    *,
    backend: str = "auto",
    record: bool = False,
    target: TargetProfile | None = None,
    trace: bool = False,
) -> SimResult:
    """Simulate a batch bit-exactly; every backend gives the same result.

    Args:
        graph: a chain Input -> ... -> LIF [-> Flatten] -> Output.
        x: integer input, (B, *input.shape) for a ``static`` Input (the same sample at every
            step) or (B, T, *input.shape) for ``frames``.
        timesteps: T >= 1.
        backend: ``auto`` (fastest installed), ``fast`` or ``reference``.
        record: also return every LIF layer's spikes at every step, (T, B, *shape) uint8.
        target: if given, inputs must fit its input type and synaptic sums outside its
            accumulator type are counted (``LayerStats.accumulator_overflows``).
        trace: also return every LIF layer's membrane V[t] after every step (after an
            immediate reset), (T, B, *shape) int64; runs the reference backend.

    Returns:
        Output counts, predictions, per-layer statistics (module docstring) and spikes.

    Raises:
        QsnnError: timesteps < 1, an empty batch, an unknown or unavailable backend.
        GraphError: the graph is not a supported chain, or x has the wrong shape or values
            outside the Input type.
        TargetError: x outside the target's input type; a layer with overflow policy
            ``error`` overflowed; a synaptic sum could exceed int64.
    """
    if cuba_chain.is_current_based(graph):  # Xylo's neurons read their Linear themselves: their own chain loop
        return cuba_chain.simulate(graph, _check_input(graph, x, timesteps, target), int(timesteps), record=record)
    layers, out_name = _layers(graph)
    check_int64_range(graph)
    x = _check_input(graph, x, timesteps, target)
    module = reference if trace else _backend(backend)  # only the reference keeps every step's membranes
    acc = target.accumulator if target is not None else None
    extra = {"trace": True} if trace else {}
    raw: reference.BackendRun = module.run(graph, x, int(timesteps), record=record, accumulator=acc, **extra)
    batch = x.shape[0]
    counts = raw.neuron_counts[out_name].reshape(batch, -1)
    stats = [_layer_stats(layer, raw, x, int(timesteps)) for layer in layers]
    return SimResult(
        counts=counts,
        predictions=np.argmax(counts, axis=1),  # first maximum: the lowest index wins ties
        layers=stats,
        layer_spike_counts={n: c.reshape(batch, -1).sum(axis=1) for n, c in raw.neuron_counts.items()},
        spikes=raw.spikes,
        backend=module.__name__.rsplit(".", 1)[-1],
        membranes=raw.membranes,
    )


def _layer_stats(layer: _Layer, raw: reference.BackendRun, x: np.ndarray, timesteps: int) -> LayerStats:
    batch = x.shape[0]
    synops = dense = weight_bits = 0
    for syn in layer.synaptic:
        weight_bits += int(np.prod(syn.node.weight.shape)) * syn.node.weight.dtype.bits
        if syn.source is None:
            dense += dense_macs(syn.node, syn.in_shape) * batch * (1 if syn.static else timesteps)
            continue
        if syn.source == "input":  # 0/1 input values: events per position over the steps
            events = x.sum(axis=0) * timesteps if syn.static else x.sum(axis=(0, 1))
        else:
            events = raw.neuron_counts[syn.source].sum(axis=0)
        synops += int((events.reshape(syn.in_shape) * fan_out(syn.node, syn.in_shape)).sum())
    state_bits = layer.node.state.bits
    neurons = int(np.prod(layer.shape))
    return LayerStats(
        name=layer.name,
        op=layer.ops,
        neurons=neurons,
        spikes=int(raw.neuron_counts[layer.name].sum()),
        synops=synops,
        dense_macs=dense,
        saturations=int(raw.saturations[layer.name]),
        accumulator_overflows=int(raw.accumulator_overflows[layer.name]),
        weight_bits=weight_bits,
        state_bits=neurons * state_bits,
        param_bits=2 * layer.shape[0] * state_bits,
    )


def simulate_split(
    graph: Graph,
    x_all: np.ndarray,
    y_all: np.ndarray,
    timesteps: int,
    *,
    batch_size: int = 256,
    limit: int | None = None,
    backend: str = "auto",
    target: TargetProfile | None = None,
    progress: bool = True,
) -> SplitReport:
    """Simulate a data set in batches (memory stays that of one batch) and total the stats.

    Args:
        graph, timesteps, backend, target: as :func:`simulate`.
        x_all: (N, ...) inputs, each sample as :func:`simulate` takes it.
        y_all: (N,) integer labels.
        batch_size: samples per batch.
        limit: simulate only the first ``limit`` samples.
        progress: show a tqdm bar.

    Returns:
        Accuracy, sample count, per-layer totals, and every sample's prediction and counts.
    """
    from tqdm import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise QsnnError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    y_all = np.asarray(y_all)
    n = len(x_all) if limit is None else min(len(x_all), int(limit))
    if len(y_all) < n:
        raise QsnnError(f"{len(y_all)} labels for {n} samples")
    if n < 1:
        raise QsnnError("nothing to simulate: no samples")
    totals: list[LayerStats] | None = None
    preds, counts, used = [], [], "reference"
    for start in tqdm(range(0, n, batch_size), desc="simulate", unit="batch", disable=not progress):
        res = simulate(graph, x_all[start : min(start + batch_size, n)], timesteps, backend=backend, target=target)
        totals = res.layers if totals is None else [a.merged(b) for a, b in zip(totals, res.layers)]
        preds.append(res.predictions)
        counts.append(res.counts)
        used = res.backend
    predictions = np.concatenate(preds)
    return SplitReport(
        samples=n,
        correct=int((predictions == y_all[:n]).sum()),
        timesteps=int(timesteps),
        layers=totals or [],
        predictions=predictions,
        counts=np.concatenate(counts),
        backend=used,
    )


__all__ = ["BACKENDS", "LayerStats", "SimResult", "SplitReport", "check_int64_range", "dense_macs", "fan_out", "simulate", "simulate_split"]
