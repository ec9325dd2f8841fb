"""Integer-state JSON graph: the whole frozen graph, its target and golden test vectors.

Document (schema: ``qsnn_deploy/schemas/graph.schema.json``, JSON Schema 2020-12)::

    {"format": "qsnn-deploy-graph", "version": 1,
     "graph": Graph.to_dict(), "target": TargetProfile.to_dict() | null,
     "timesteps": T | null, "golden": [sample, ...] | null}

Each golden sample holds an input (an integer tensor: ``Input.shape`` for static inputs,
``[T, *Input.shape]`` for frames) and the simulator's spike counts for it over T steps:
``output_counts`` (one per output neuron) and ``layer_spike_counts`` (total spikes of each
LIF layer), so a hardware testbench can check itself.

Writing is deterministic (sorted keys, fixed separators, no NaN) and atomic, and the
document is validated against the schema on the way out and on the way in.
:func:`read_graph_json` turns *every* malformed document into :class:`GraphError`.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from qsnn_deploy.atomic import write_text_atomic
from qsnn_deploy.errors import ExportError, GraphError, QsnnError, TargetError
from qsnn_deploy.ir import FORMAT, VERSION, CubaLIF, Graph, IntTensor
from qsnn_deploy.ir.tensor import MAX_ELEMENTS
from qsnn_deploy.targets import TargetProfile, load_target

#: largest document :func:`read_graph_json` reads (the IR's own limits bound what it builds)
MAX_DOCUMENT_BYTES = 200 * 2**20
#: most golden samples one document may carry
MAX_GOLDEN = 10_000
_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError, AttributeError)


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of the document (package data)."""
    text = (resources.files("qsnn_deploy") / "schemas" / "graph.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


def _schema_error(doc: Any) -> str | None:
    """The most relevant schema violation of ``doc`` as one line, or None if it is valid."""
    import jsonschema

    err = jsonschema.exceptions.best_match(_validator().iter_errors(doc))
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path) or "(document)"
    return f"{where}: {err.message}"[:400]


def to_graph_json(
    graph: Graph, *, target: TargetProfile | str | None = None, timesteps: int | None = None, golden: np.ndarray | None = None
) -> dict[str, Any]:
    """The JSON document of ``graph`` as a dict (see the module docstring).

    Args:
        graph: the frozen integer graph.
        target: the target profile (or built-in name) the graph was frozen for.
        timesteps: T, the number of steps a sample runs for; required with ``golden``.
        golden: N input samples, (N, *input shape) for static inputs or (N, T, *input shape)
            for frames; their expected spike counts come from :func:`qsnn_deploy.sim.simulate`.

    Raises:
        ExportError: bad T or golden inputs, no simulator, or a document that fails the
            schema (e.g. metadata that is not JSON).
    """
    if timesteps is not None and (type(timesteps) is not int or timesteps < 1):
        raise ExportError(f"timesteps must be a positive integer, got {timesteps!r}")
    try:
        profile = load_target(target) if isinstance(target, (str, Path)) else target
    except QsnnError as exc:
        raise ExportError(str(exc)) from None
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "graph": graph.to_dict(),
        "target": profile.to_dict() if profile is not None else None,
        "timesteps": timesteps,
        "golden": _golden(graph, golden, timesteps) if golden is not None else None,
    }
    problem = _schema_error(json.loads(_dumps(doc)))  # validate what a reader will see
    if problem:
        raise ExportError(f"graph document violates its schema at {problem}")
    return doc


def _dumps(doc: dict[str, Any]) -> str:
    try:
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ExportError(f"graph document is not plain JSON (check graph.metadata): {exc}") from None


def export_graph_json(
    graph: Graph,
    path: str | os.PathLike[str],
    *,
    target: TargetProfile | str | None = None,
    timesteps: int | None = None,
    golden: np.ndarray | None = None,
) -> Path:
    """Write :func:`to_graph_json` to ``path`` atomically; the same graph gives the same bytes."""
    return write_text_atomic(path, _dumps(to_graph_json(graph, target=target, timesteps=timesteps, golden=golden)))


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


def _golden(graph: Graph, inputs: np.ndarray, timesteps: int | None) -> list[dict[str, Any]]:
    """Golden samples: each input with the simulator's output and per-layer spike counts."""
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
        res = simulate(graph, x.astype(np.int64), timesteps, backend="reference", record=True)
    except TargetError as exc:
        # a membrane overflow under overflow="error" is the model not fitting its target, not an
        # exporter limit: keep its class (exit status 6, docs/cli.md) and say where it happened
        raise TargetError(f"golden vectors: {exc}"[:400]) from None
    except QsnnError as exc:
        raise ExportError(f"golden vectors: the simulation failed: {exc}"[:400]) from None
    counts = np.asarray(res.counts)
    layers = {name: np.asarray(v) for name, v in res.layer_spike_counts.items()}
    return [
        {
            "input": IntTensor(x[i], node.dtype).to_dict(),
            "output_counts": [int(c) for c in counts[i].ravel()],
            "layer_spike_counts": {name: int(v[i]) for name, v in layers.items()},
            "spike_rasters": {name: pack_raster(r[:, i]) for name, r in res.spikes.items()},
        }
        for i in range(len(x))
    ]


def read_graph_json(path: str | os.PathLike[str]) -> tuple[Graph, TargetProfile | None, dict[str, Any]]:
    """Read a graph document: ``(graph, target or None, meta)``.

    ``meta`` has ``format``, ``version``, ``timesteps`` and ``golden`` (None, or a list of
    samples with ``input`` as an int64 array and ``output_counts`` / ``layer_spike_counts``,
    plus ``spike_rasters`` (LIF name -> (T, *shape) uint8) when the file has them).

    Raises:
        GraphError: for any unreadable or malformed document (not JSON, too large, schema
            violation, unknown version, a graph the IR rejects, inconsistent golden data);
            the message starts with the file's path.
    """
    try:
        return _read_graph_json(path)
    except GraphError as exc:
        raise GraphError(f"{os.fspath(path)}: {exc}") from None


def _read_graph_json(path: str | os.PathLike[str]) -> tuple[Graph, TargetProfile | None, dict[str, Any]]:
    try:
        with open(path, "rb") as fh:  # in chunks: read(MAX + 1) would allocate the whole limit up front
            chunks, size = [], 0
            while size <= MAX_DOCUMENT_BYTES and (chunk := fh.read(1 << 20)):
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
    except OSError as exc:
        raise GraphError(f"cannot read graph document: {exc.strerror or exc}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise GraphError(f"graph document is larger than the limit of {MAX_DOCUMENT_BYTES} bytes")
    try:
        text = data.decode("utf-8")
        doc = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except GraphError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GraphError(f"graph document is not valid UTF-8 JSON: {exc}"[:300]) from None
    except _ERRORS as exc:  # e.g. nesting too deep, integers with too many digits
        raise GraphError(f"graph document cannot be parsed: {type(exc).__name__}: {exc}"[:300]) from None
    return from_document(doc)


def _reject_constant(name: str) -> Any:
    raise GraphError(f"graph document contains {name}, which is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = sorted({k for k, _ in pairs if k in seen or seen.add(k)})  # linear: a big object must not hang us
        raise GraphError(f"graph document repeats the key(s) {dup[:5]}"[:300])
    return out


def from_document(doc: Any) -> tuple[Graph, TargetProfile | None, dict[str, Any]]:
    """Validate a parsed document and build its graph; see :func:`read_graph_json`."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise GraphError(f'not a {FORMAT} document (its "format" must be {FORMAT!r})')
    if doc.get("version") != VERSION:
        raise GraphError(f"unsupported {FORMAT} version {doc.get('version')!r}; this reader supports version {VERSION}"[:300])
    try:
        problem = _schema_error(doc)
        if problem:
            raise GraphError(f"graph document violates its schema at {problem}")
        graph = Graph.from_dict(doc["graph"])
        target = TargetProfile.from_dict(doc["target"]) if doc["target"] is not None else None
        golden = _read_golden(graph, doc["golden"], doc["timesteps"]) if doc["golden"] is not None else None
    except GraphError:
        raise
    except QsnnError as exc:  # TargetError from the profile
        raise GraphError(f"graph document: {exc}"[:400]) from None
    except _ERRORS as exc:
        raise GraphError(f"graph document is malformed: {type(exc).__name__}: {exc}"[:400]) from None
    meta = {"format": doc["format"], "version": doc["version"], "timesteps": doc["timesteps"], "golden": golden}
    return graph, target, meta


def _read_golden(graph: Graph, samples: list[dict[str, Any]], timesteps: int | None) -> list[dict[str, Any]]:
    """Golden samples as arrays, checked against the graph (shapes, names, count ranges)."""
    if timesteps is None:
        raise GraphError("golden vectors need timesteps")
    if len(samples) > MAX_GOLDEN:
        raise GraphError(f"more than {MAX_GOLDEN} golden samples")
    node = graph.input
    expect = node.shape if node.encoding == "static" else (timesteps, *node.shape)
    shapes = graph.shapes()
    lifs = {name: int(np.prod(shapes[name])) for name, _ in graph.lif_layers()}
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
            sample["spike_rasters"] = _read_rasters(s["spike_rasters"], layer, shapes, timesteps, i)
        out.append(sample)
    return out


def _read_rasters(rasters: dict[str, str], layer_counts: dict[str, int], shapes: dict, timesteps: int, i: int) -> dict[str, np.ndarray]:
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
