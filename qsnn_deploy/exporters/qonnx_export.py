"""QONNX export: quantised weights as ``Quant`` nodes, LIF as standard ops, spikes as ``MultiThreshold``.

The layout follows what Brevitas exports and FINN/qonnx tooling expects:

- each weight is a float32 initializer holding the integer codes, passed through a ``Quant``
  node (domain ``qonnx.custom_op.general``; inputs scale=1, zero_point=0, bitwidth as float32
  scalar initializers; attributes ``signed``, ``narrow``, ``rounding_mode="ROUND"``), so qonnx
  infers ``INT<b>`` weights. Scale 1 keeps the graph in the integer units of the IR.
- ``Conv`` (with explicit ``kernel_shape``) and ``MatMul`` run in float32, sum pooling as
  ``AveragePool`` followed by ``Mul(kh*kw)`` (plus ``Round`` when kh*kw is not a power of two);
  the exporter proves all their sums stay below 2^24 (2^21 before a ``Round``), so float32 is
  exact, and raises ``ExportError`` otherwise.
- each LIF is a chain of standard float64 ops (``Cast`` in, decay ``Floor``, ``Clip``; see
  :mod:`._onnx_common`) ending in a qonnx ``MultiThreshold`` with one threshold per channel
  (``out_dtype="BINARY"``): spikes are ``V >= threshold+1`` for compare "gt" (V is an
  integer), ``V >= threshold`` for "ge". Spikes are cast back to float32 for the next layer.
- the input tensor and the state inputs carry ``finn_datatype`` annotations (e.g. UINT8,
  INT24, BINARY).

Inputs, outputs and state names are those of :mod:`.onnx_plain` (step or unrolled). The batch
size is fixed (default 1) because qonnx's executor allocates every tensor from its shape.
The model runs with ``qonnx.core.onnx_exec.execute_onnx`` (not plain onnxruntime, which
lacks the custom ops).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from qsnn_deploy.analysis.bounds import magnitudes
from qsnn_deploy.atomic import write_bytes_atomic
from qsnn_deploy.errors import ExportError
from qsnn_deploy.exporters._onnx_common import EXACT_F32, EXACT_F64, OPSET, Builder, Dim, chain_of, check_exact
from qsnn_deploy.exporters._onnx_time import Lowering, build_body
from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Input, Linear, SumPool2d

QONNX_DOMAIN = "qonnx.custom_op.general"
F32 = TensorProto.FLOAT
F64 = TensorProto.DOUBLE
MAX_UNROLL = 256
#: below this a float32 average times the window area is within 1/4 of the integer sum
EXACT_F32_ROUNDED = 2**21
_LAYOUTS = {2: "NC", 3: "NCW", 4: "NCHW"}


def _quant_weight(b: Builder, name: str, node: Conv2d | Linear, values: np.ndarray) -> str:
    """Float32 integer codes through a Brevitas-style Quant node (scale 1, zero point 0)."""
    dtype = node.weight.dtype
    w = b.const(f"{name}_weight", values, F32)
    scale = b.const(f"{name}_scale", np.float32(1.0), F32)
    zero = b.const(f"{name}_zero_point", np.float32(0.0), F32)
    bits = b.const(f"{name}_bit_width", np.float32(dtype.bits), F32)
    return b.op(
        "Quant",
        [w, scale, zero, bits],
        values.shape,
        hint=f"{name}_weight_q",
        elem=F32,
        domain=QONNX_DOMAIN,
        signed=int(dtype.signed),
        narrow=int(dtype.narrow),
        rounding_mode="ROUND",
    )


def _synapse(batch: Dim) -> Any:
    def emit(b: Builder, name: str, node: Any, x: str, in_shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        out = node.output_shape(in_shape)
        if isinstance(node, Conv2d):
            w = _quant_weight(b, name, node, node.weight.values)
            (ph, pw), (sh, sw) = node.padding, node.stride
            return b.op(
                "Conv",
                [x, w],
                [batch, *out],
                hint=name,
                elem=F32,
                kernel_shape=list(node.weight.shape[2:]),
                strides=[sh, sw],
                pads=[ph, pw, ph, pw],
                dilations=[1, 1],
                group=1,
            ), out
        if isinstance(node, SumPool2d):
            kh, kw = node.kernel
            avg = b.op("AveragePool", [x], [batch, *out], hint=f"{name}_avg", elem=F32, kernel_shape=[kh, kw], strides=list(node.stride))
            y = b.op("Mul", [avg, b.const(f"{name}_area", np.float32(kh * kw), F32)], [batch, *out], hint=name, elem=F32)
            if (kh * kw) & (kh * kw - 1):  # not a power of two: x/k^2*k^2 may be off by a rounding error
                y = b.op("Round", [y], [batch, *out], hint=f"{name}_round", elem=F32)
            return y, out
        if isinstance(node, Flatten):
            return b.op("Flatten", [x], [batch, *out], hint=name, elem=F32, axis=1), out
        if isinstance(node, Linear):
            w = _quant_weight(b, name, node, node.weight.values.T)
            return b.op("MatMul", [x, w], [batch, *out], hint=name, elem=F32), out
        raise ExportError(f"node {name!r}: the QONNX exporter cannot express {type(node).__name__}")  # pragma: no cover

    return emit


def _spike(b: Builder, name: str, node: LIF, v: str, shape: tuple[Dim, ...]) -> str:
    """MultiThreshold(V, T) = [V >= T] per channel; T = threshold + 1 for compare "gt"."""
    thr = node.threshold.values + (1 if node.compare == "gt" else 0)
    layout = _LAYOUTS.get(len(shape))
    if layout is None:
        raise ExportError(f"LIF {name!r}: MultiThreshold needs a rank-2..4 tensor, got rank {len(shape)}")
    t = b.const(f"{name}_mt_thresholds", thr.reshape(-1, 1))
    return b.op("MultiThreshold", [v, t], shape, hint=f"{name}_spikes", domain=QONNX_DOMAIN, out_dtype="BINARY", data_layout=layout)


def _check_float32(graph: Graph) -> None:
    """The float32 part (synapses) must be exact: every sum below 2^24 (2^21 before Round)."""
    mags = magnitudes(graph)
    for name, node in graph.chain():
        limit = EXACT_F32
        if isinstance(node, SumPool2d) and (node.kernel[0] * node.kernel[1]) & (node.kernel[0] * node.kernel[1] - 1):
            limit = EXACT_F32_ROUNDED
        if isinstance(node, (Conv2d, Linear, SumPool2d, Input)) and mags[name] >= limit:
            raise ExportError(
                f"node {name!r}: sums reach {mags[name]}, beyond float32's exact integers (< {limit}); "
                "QONNX carries synapses in float32 (use the onnx format, which uses float64)"
            )


def to_qonnx(graph: Graph, *, timesteps: int | None = None, unroll: bool = False, batch: int = 1) -> onnx.ModelProto:
    """The QONNX model of ``graph`` (see the module docstring).

    Args:
        graph: a chain graph from Input to Output.
        timesteps: T; required when ``unroll`` is set.
        unroll: emit T steps in one graph instead of one step per call.
        batch: the fixed batch size.

    Raises:
        ExportError: not a chain, T missing or too large, or values beyond the exact range.
    """
    chain = chain_of(graph)
    check_exact(graph, EXACT_F64, "float64")
    _check_float32(graph)
    if type(batch) is not int or batch < 1:
        raise ExportError(f"batch must be a positive integer, got {batch!r}")
    if unroll and (type(timesteps) is not int or not 1 <= timesteps <= MAX_UNROLL):
        raise ExportError(f"unroll needs timesteps between 1 and {MAX_UNROLL}, got {timesteps!r}")
    if timesteps is not None and (type(timesteps) is not int or timesteps < 1):
        raise ExportError(f"timesteps must be a positive integer, got {timesteps!r}")
    inp: Input = chain[0][1]
    static = inp.encoding == "static"
    b = Builder(F64, annotate_types=True)
    x_shape = [batch, *inp.shape] if (static or not unroll) else [batch, timesteps, *inp.shape]
    in_type = inp.dtype.name.replace("_NARROW", "")  # qonnx has no narrow types; the range is a subset
    x = b.add_input("x", x_shape, F32, annotate=in_type)
    lowering = Lowering(synapse=_synapse(batch), spike=_spike, batch=batch, synapse_elem=F32)
    contract: dict[str, Any] = {
        "format": "qsnn-deploy-qonnx",
        "mode": "unrolled" if unroll else "step",
        "timesteps": timesteps,
        "encoding": inp.encoding,
        "input_dtype": inp.dtype.name,
        "carrier": "float32 synapses, float64 LIF",
        "batch": batch,
        "state": [],
    }
    build_body(b, chain, x, static, timesteps, lowering, unroll, contract)
    doc = f"qsnn-deploy integer SNN for qonnx ({contract['mode']}, batch {batch})"
    return b.model("qsnn_deploy_qonnx", doc, contract, [("", OPSET), (QONNX_DOMAIN, 1)])


def export_qonnx(graph: Graph, path: str | os.PathLike[str], *, timesteps: int | None = None, unroll: bool = False, batch: int = 1) -> Path:
    """Write :func:`to_qonnx` to ``path`` atomically; identical graphs give identical bytes."""
    model = to_qonnx(graph, timesteps=timesteps, unroll=unroll, batch=batch)
    try:
        onnx.checker.check_model(model)  # structure only: the full check cannot type qonnx's custom ops
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejects the exported model: {exc}"[:500]) from None
    return write_bytes_atomic(path, model.SerializeToString(deterministic=True))
