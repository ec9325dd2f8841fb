"""Exporters of the frozen integer graph: one module per format (see docs/formats.md).

Each module exposes ``to_X(graph, ...)`` (the in-memory object) and ``export_X(graph, path,
...) -> Path`` (a deterministic, atomic write). :data:`FORMATS` is the registry: a new format
is one module plus one :class:`ExportFormat` entry here; the CLI's ``--format`` choices, its
default output names and the option checks of :func:`export` all come from it.

The heavy dependencies (onnx, qonnx, nir, ...) are imported only when their format is used.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsnn_deploy.errors import ExportError
from qsnn_deploy.ir import Graph

#: options every exporter may receive; they describe the graph's context, not a choice of the user
CONTEXT_OPTIONS = frozenset({"target", "timesteps", "golden_source"})


@dataclass(frozen=True)
class ExportFormat:
    """One export format: where its writer lives and which options it takes.

    Attributes:
        name: the ``--format`` value.
        module: module of :mod:`qsnn_deploy.exporters` holding the writer.
        function: the writer, ``function(graph, path, **options) -> Path``.
        suffix: default output name is ``<model stem><suffix>`` (a folder when ``directory``).
        options: keyword options of :func:`export` the writer takes; the value is the writer's
            own parameter name.
        directory: the output is a folder of several files, not one file.
        summary: one line for ``--help`` and docs.
        checks_target: the output is a chip's configuration, so ``export`` runs the target's
            rules first (``--ignore-limits`` turns their failures into warnings).
    """

    name: str
    module: str
    function: str
    suffix: str
    options: tuple[tuple[str, str], ...]
    directory: bool = False
    summary: str = ""
    checks_target: bool = False

    def default_output(self, model_path: str | os.PathLike[str]) -> Path:
        """The output path used when the user gives none: beside the current directory, named after the model."""
        stem = Path(model_path).name.split(".")[0] or "model"
        return Path(stem + self.suffix)

    def writer(self):
        return getattr(importlib.import_module(f".{self.module}", __name__), self.function)


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "json",
            "json_graph",
            "export_graph_json",
            ".graph.json",
            (
                ("target", "target"),
                ("timesteps", "timesteps"),
                ("golden", "golden"),
                ("trace", "trace"),
                ("golden_source", "golden_source"),
            ),
            summary="the integer graph + JSON Schema (hardware generators, testbenches)",
        ),
        ExportFormat(
            "onnx",
            "onnx_plain",
            "export_onnx",
            ".onnx",
            (("timesteps", "timesteps"), ("unroll", "unroll")),
            summary="standard ops in float64 (onnxruntime)",
        ),
        ExportFormat(
            "qonnx",
            "qonnx_export",
            "export_qonnx",
            ".qonnx.onnx",
            (("timesteps", "timesteps"), ("unroll", "unroll")),
            summary="Quant + MultiThreshold (qonnx / FINN tooling)",
        ),
        ExportFormat(
            "nir",
            "nir_export",
            "export_nir",
            ".nir",
            (("nir_dialect", "dialect"),),
            summary="HDF5 (norse, snnTorch and other NIR readers)",
        ),
        ExportFormat(
            "xylo",
            "xylo_export",
            "export_xylo",
            ".xylo.npz",
            (("target", "target"), ("timesteps", "timesteps"), ("golden", "golden"), ("golden_source", "golden_source")),
            summary="SynSense Xylo: XyloSim.from_specification arguments (NPZ), optional golden spikes",
            checks_target=True,
        ),
    )
}


def export(graph: Graph, fmt: str, path: str | os.PathLike[str], **options: Any) -> Path:
    """Export ``graph`` as ``fmt`` to ``path``; returns the path written.

    Args:
        graph: the frozen integer graph.
        fmt: one of :data:`FORMATS`.
        path: the output file or folder (replaced atomically).
        **options: ``target`` (profile or name) and ``timesteps`` (T) describe the graph and
            reach every writer that takes them; the rest are the user's choices and must be
            taken by the format: ``golden`` (input samples to store with their simulated
            outputs), ``trace`` (golden samples carry membrane traces), ``golden_source``
            (a :class:`~.golden.GoldenSource`: where the golden inputs came from), ``unroll``
            (onnx/qonnx: all T steps in one graph), ``nir_dialect``
            (``"norse"`` or ``"snntorch"``), and whatever a format's entry lists.

    Raises:
        ExportError: unknown format, an option the format does not take, or a graph the
            format cannot express exactly.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    spec = FORMATS[fmt]
    taken = dict(spec.options)
    for name, value in options.items():
        if name in taken or name in CONTEXT_OPTIONS or value is None or value is False:
            continue
        takers = [f.name for f in FORMATS.values() if name in dict(f.options)]
        where = f"; it applies to {', '.join(takers)}" if takers else ""
        raise ExportError(f"option {name!r} does not apply to the {fmt} format{where}")
    kwargs = {param: options[name] for name, param in spec.options if name in options and options[name] is not None}
    return spec.writer()(graph, path, **kwargs)


__all__ = ["CONTEXT_OPTIONS", "ExportFormat", "FORMATS", "export"]
