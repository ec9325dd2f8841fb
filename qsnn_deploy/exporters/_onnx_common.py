"""Shared pieces of the ONNX and QONNX exporters: a small graph builder, value bounds, index tables.

Both exporters carry the integer arithmetic in floating point, which is exact as long as
every intermediate value (and every partial sum of a dot product, in any order) is an
integer of magnitude below 2^53 (float64) or 2^24 (float32). :func:`magnitudes` bounds
every tensor of the graph so the exporters can prove that before emitting a model, and
refuse (``ExportError``) when they cannot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qsnn_deploy.analysis.bounds import lif_peak, magnitudes
from qsnn_deploy.errors import ExportError, GraphError
from qsnn_deploy.ir import LIF, Conv2d, Graph, SumPool2d
from qsnn_deploy.ir.tensor import MAX_ELEMENTS

#: ONNX opset and IR version of every model we write (onnxruntime >= 1.14 runs both)
OPSET = 17
IR_VERSION = 8
#: largest integer magnitude a float64 / float32 carries exactly (all integers below it)
EXACT_F64 = 2**53
EXACT_F32 = 2**24

Dim = int | str
_NP = {TensorProto.DOUBLE: np.float64, TensorProto.FLOAT: np.float32, TensorProto.INT64: np.int64}


class Builder:
    """Collects nodes, initializers and the type and shape of every tensor it creates.

    Every tensor gets a value_info, because qonnx's ``execute_onnx`` needs all shapes and
    ``onnx.checker``'s full check then verifies them against its own shape inference.
    """

    def __init__(self, elem: int, *, annotate_types: bool = False) -> None:
        self.elem = elem
        self.annotate_types = annotate_types
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.info: dict[str, onnx.ValueInfoProto] = {}
        self.inputs: list[onnx.ValueInfoProto] = []
        self.annotations: dict[str, str] = {}
        self.outputs: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()
        self._count = 0
        self._consts: dict[tuple[str, int, tuple[int, ...], bytes], str] = {}

    def name(self, hint: str) -> str:
        """A fresh tensor name derived from ``hint`` (numbered so it is stable per build)."""
        while True:
            self._count += 1
            candidate = f"{hint}__{self._count}"
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate

    def reserve(self, name: str) -> str:
        if name in self._used:
            raise ExportError(f"tensor name {name!r} is used twice; rename the graph's nodes")
        self._used.add(name)
        return name

    def const(self, hint: str, values: Any, elem: int | None = None) -> str:
        """An initializer; asking again for the same hint and value returns the same one."""
        elem = self.elem if elem is None else elem
        arr = np.array(values, dtype=_NP[elem], order="C")  # (ascontiguousarray would make scalars 1-D)
        key = (hint, elem, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.name(hint)
            self.initializers.append(numpy_helper.from_array(arr, self._consts[key]))
        return self._consts[key]

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        shape: Sequence[Dim],
        *,
        hint: str,
        elem: int | None = None,
        domain: str = "",
        out: str | None = None,
        **attrs: Any,
    ) -> str:
        """Append one node with a single output of the given shape; returns its name."""
        elem = self.elem if elem is None else elem
        name = self.reserve(out) if out is not None else self.name(hint)
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=f"{op_type}_{len(self.nodes)}", domain=domain, **attrs))
        if out is None:
            self.info[name] = helper.make_tensor_value_info(name, elem, list(shape))
        else:
            self.outputs.append(helper.make_tensor_value_info(name, elem, list(shape)))
        return name

    def add_input(self, name: str, shape: Sequence[Dim], elem: int | None = None, annotate: str | None = None) -> str:
        """A graph input; ``annotate`` records its integer type for qonnx (``finn_datatype``)."""
        self.inputs.append(helper.make_tensor_value_info(self.reserve(name), self.elem if elem is None else elem, list(shape)))
        if annotate is not None and self.annotate_types:
            self.annotations[name] = annotate
        return name

    def input_elem(self, name: str) -> int:
        return next(i.type.tensor_type.elem_type for i in self.inputs if i.name == name)

    def model(self, graph_name: str, doc: str, contract: dict[str, Any], opsets: Sequence[tuple[str, int]]) -> onnx.ModelProto:
        """The finished model; identical builds serialise to identical bytes."""
        g = helper.make_graph(self.nodes, graph_name, self.inputs, self.outputs, self.initializers, value_info=list(self.info.values()))
        for tensor, datatype in self.annotations.items():
            entry = onnx.TensorAnnotation(tensor_name=tensor)
            entry.quant_parameter_tensor_names.append(onnx.StringStringEntryProto(key="finn_datatype", value=datatype))
            g.quantization_annotation.append(entry)
        model = helper.make_model(
            g,
            opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
            producer_name="qsnn-deploy",
            producer_version="1",
            ir_version=IR_VERSION,
            doc_string=doc,
        )
        helper.set_model_props(model, {"qsnn_deploy": json.dumps(contract, sort_keys=True)})
        return model


def chain_of(graph: Graph) -> list[tuple[str, Any]]:
    """The graph as a chain, with GraphError turned into the exporters' ExportError."""
    try:
        return graph.chain()
    except GraphError as exc:
        raise ExportError(f"cannot export: {exc}") from None


def check_exact(graph: Graph, limit: int, what: str) -> dict[str, int]:
    """Raise ExportError unless every value of the graph stays below ``limit`` in magnitude."""
    mags = magnitudes(graph)
    prev = 0
    for name, node in graph.chain():
        peak = lif_peak(node, prev) if isinstance(node, LIF) else mags[name]
        if peak >= limit:
            raise ExportError(
                f"node {name!r}: values reach {peak} (~2^{peak.bit_length()}), beyond the exact integer range "
                f"of {what} (2^{limit.bit_length() - 1}); the model would not be bit-exact"
            )
        prev = mags[name]
    return mags


def channel_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Broadcast shape of a per-channel vector against a per-sample tensor (channel = axis 0)."""
    return (shape[0],) + (1,) * (len(shape) - 1)


def conv_gather_indices(in_shape: Sequence[int], node: Conv2d) -> tuple[np.ndarray, tuple[int, int, int]]:
    """im2col as gather indices: (C*kh*kw, Ho*Wo) into the flattened padded input.

    Rows are ordered (c, kh, kw), matching ``weight.reshape(O, -1)``; columns are output
    positions in row-major order.
    """
    c, h, w = in_shape
    o, _, kh, kw = node.weight.shape
    (sh, sw), (ph, pw) = node.stride, node.padding
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    if c * kh * kw * ho * wo > MAX_ELEMENTS:
        raise ExportError(f"convolution gather table of {c * kh * kw * ho * wo} entries exceeds {MAX_ELEMENTS}")
    ci, ki, kj = np.meshgrid(np.arange(c), np.arange(kh), np.arange(kw), indexing="ij")
    oi, oj = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    rows = (ci * hp * wp + ki * wp + kj).reshape(-1, 1)
    cols = (oi * sh * wp + oj * sw).reshape(1, -1)
    return (rows + cols).astype(np.int64), (o, ho, wo)


def pool_gather_indices(in_shape: Sequence[int], node: SumPool2d) -> tuple[np.ndarray, tuple[int, int]]:
    """Sum-pool windows as gather indices: (kh*kw, Ho*Wo) into a flattened (H*W) plane."""
    _, h, w = in_shape
    (kh, kw), (sh, sw) = node.kernel, node.stride
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    ki, kj = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    oi, oj = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    idx = (ki * w + kj).reshape(-1, 1) + (oi * sh * w + oj * sw).reshape(1, -1)
    return idx.astype(np.int64), (ho, wo)


def state_names(name: str) -> dict[str, str]:
    return {
        "v_in": f"{name}_v_in",
        "v_out": f"{name}_v_out",
        "s_in": f"{name}_s_in",
        "s_out": f"{name}_s_out",
        "overflow": f"{name}_overflow",
        "spikes": f"{name}_spikes",
    }
