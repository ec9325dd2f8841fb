"""Exporters of the frozen integer graph: one module per format (see docs/formats.md).

Each module exposes ``to_X(graph, ...)`` (the in-memory object) and ``export_X(graph, path,
...) -> Path`` (a deterministic, atomic write). :func:`export` dispatches on a format name:

- ``json``: :mod:`.json_graph`, the integer graph + JSON Schema (hardware generators, testbenches)
- ``onnx``: :mod:`.onnx_plain`, standard ops in float64 (onnxruntime)
- ``qonnx``: :mod:`.qonnx_export`, Quant + MultiThreshold (qonnx / FINN tooling)
- ``nir``: :mod:`.nir_export`, HDF5 (norse, snnTorch and other NIR readers)

The heavy dependencies (onnx, qonnx, nir) are imported only when their format is used.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from qsnn_deploy.errors import ExportError
from qsnn_deploy.ir import Graph

#: format name -> (module, export function)
FORMATS: dict[str, tuple[str, str]] = {
    "json": ("json_graph", "export_graph_json"),
    "onnx": ("onnx_plain", "export_onnx"),
    "qonnx": ("qonnx_export", "export_qonnx"),
    "nir": ("nir_export", "export_nir"),
}


def export(
    graph: Graph,
    fmt: str,
    path: str | os.PathLike[str],
    *,
    target: Any = None,
    timesteps: int | None = None,
    unroll: bool = False,
    golden: Any = None,
    nir_dialect: str = "norse",
) -> Path:
    """Export ``graph`` as ``fmt`` to ``path``; returns the path written.

    Args:
        graph: the frozen integer graph.
        fmt: one of :data:`FORMATS`.
        path: the output file (replaced atomically).
        target: target profile or name (recorded by ``json``).
        timesteps: T (``json`` records it and needs it for ``golden``; ``onnx``/``qonnx``
            need it with ``unroll``).
        unroll: ``onnx``/``qonnx``: all T steps in one graph instead of one step per call.
        golden: ``json``: input samples to store with their simulated spike counts.
        nir_dialect: ``nir``: ``"norse"`` or ``"snntorch"`` (see :mod:`.nir_export`).

    Raises:
        ExportError: unknown format, an option the format does not take, or a graph the
            format cannot express exactly.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if golden is not None and fmt != "json":
        raise ExportError("golden vectors are only stored by the json format")
    if unroll and fmt not in ("onnx", "qonnx"):
        raise ExportError("unroll applies to the onnx and qonnx formats only")
    module_name, func_name = FORMATS[fmt]
    func = getattr(importlib.import_module(f".{module_name}", __name__), func_name)
    if fmt == "json":
        return func(graph, path, target=target, timesteps=timesteps, golden=golden)
    if fmt in ("onnx", "qonnx"):
        return func(graph, path, timesteps=timesteps, unroll=unroll)
    return func(graph, path, dialect=nir_dialect)


__all__ = ["FORMATS", "export"]
