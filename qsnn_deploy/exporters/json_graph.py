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

import dataclasses
import functools
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from qsnn_deploy.atomic import write_text_atomic
from qsnn_deploy.errors import ExportError, GraphError, QsnnError
from qsnn_deploy.exporters.golden import MAX_GOLDEN, GoldenSource, golden_samples, pack_raster, read_golden, unpack_raster  # noqa: F401
from qsnn_deploy.ir import FORMAT, VERSION, Graph
from qsnn_deploy.targets import TargetProfile, load_target

#: largest document :func:`read_graph_json` reads (the IR's own limits bound what it builds)
MAX_DOCUMENT_BYTES = 200 * 2**20
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
    graph: Graph,
    *,
    target: TargetProfile | str | None = None,
    timesteps: int | None = None,
    golden: np.ndarray | None = None,
    trace: bool = False,
    golden_source: GoldenSource | None = None,
) -> dict[str, Any]:
    """The JSON document of ``graph`` as a dict (see the module docstring).

    Args:
        graph: the frozen integer graph.
        target: the target profile (or built-in name) the graph was frozen for.
        timesteps: T, the number of steps a sample runs for; default ``graph.timesteps``;
            required (here or in the graph) with ``golden``.
        golden: N input samples, (N, *input shape) for static inputs or (N, T, *input shape)
            for frames; their expected spike counts come from :func:`qsnn_deploy.sim.simulate`.
        trace: golden samples also carry every LIF layer's membrane at every step.
        golden_source: the data set, split and indices the golden inputs came from.

    Raises:
        ExportError: bad T or golden inputs, no simulator, or a document that fails the
            schema (e.g. metadata that is not JSON).
    """
    timesteps = graph.timesteps if timesteps is None else timesteps
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
        "golden": golden_samples(graph, golden, timesteps, trace=trace, source=golden_source) if golden is not None else None,
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
    trace: bool = False,
    golden_source: GoldenSource | None = None,
) -> Path:
    """Write :func:`to_graph_json` to ``path`` atomically; the same graph gives the same bytes."""
    doc = to_graph_json(graph, target=target, timesteps=timesteps, golden=golden, trace=trace, golden_source=golden_source)
    return write_text_atomic(path, _dumps(doc))


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
        graph = _with_timesteps(Graph.from_dict(doc["graph"]), doc["timesteps"])
        target = TargetProfile.from_dict(doc["target"]) if doc["target"] is not None else None
        golden = read_golden(graph, doc["golden"], graph.timesteps) if doc["golden"] is not None else None
    except GraphError:
        raise
    except QsnnError as exc:  # TargetError from the profile
        raise GraphError(f"graph document: {exc}"[:400]) from None
    except _ERRORS as exc:
        raise GraphError(f"graph document is malformed: {type(exc).__name__}: {exc}"[:400]) from None
    meta = {"format": doc["format"], "version": doc["version"], "timesteps": graph.timesteps, "golden": golden}
    return graph, target, meta


def _with_timesteps(graph: Graph, timesteps: int | None) -> Graph:
    """The document's T as the graph's; files written before T was a graph field also kept it in
    ``metadata.timesteps``, which is moved into the field (the document's value wins)."""
    metadata = dict(graph.metadata)
    legacy = metadata.pop("timesteps", None)
    if timesteps is None and legacy is not None:
        if type(legacy) is not int or legacy < 1:
            raise GraphError(f"graph.metadata.timesteps must be a positive integer, got {legacy!r}"[:200])
        timesteps = legacy
    return dataclasses.replace(graph, metadata=metadata, timesteps=timesteps)
