"""Plain ONNX export (standard ops only, opset 17): bit-exact integer semantics in float64.

Two forms:

- **step** (default): one time step per call. Inputs ``x`` (B, *input shape) and, per LIF
  layer ``L``, the previous membrane ``L_v_in`` and (delayed reset only) previous spikes
  ``L_s_in``; outputs ``L_v_out``, ``L_s_out`` and ``out_spikes`` (what the Output node
  counts). Start from zeros and feed each ``*_out`` back as the matching ``*_in``.
- **unrolled** (``unroll=True``): T steps in one graph. Input ``x`` (B, *shape) for static
  inputs or (B, T, *shape) for frames (the layout of :mod:`qsnn_deploy.data.loaders`); outputs ``counts`` (B, n_out) and ``L_spikes``
  (T, B, *shape) per LIF layer. A static input's layers before the first LIF run once.

Every tensor is float64 holding integers: onnxruntime has no integer or float64 ``Conv``
(nor float64 ``AveragePool``), so convolution is an im2col ``Gather`` with a constant index
table followed by ``MatMul``, and sum pooling a ``Gather`` + ``ReduceSum``. The decay is
``Floor((V*mul + r) / 2^shift)`` (the arithmetic shift), saturation ``Clip``, spikes
``Cast(Greater(V, threshold))``. The exporter proves that every value (every partial sum
of every dot product, in any order) stays below 2^53, so float64 arithmetic is exact, and
raises ``ExportError`` otherwise. With ``overflow="error"`` the membrane is clipped and an
extra scalar output ``L_overflow`` is 1.0 when the simulator would have stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from qsnn_deploy.atomic import write_bytes_atomic
from qsnn_deploy.errors import ExportError
from qsnn_deploy.exporters._onnx_common import EXACT_F64, OPSET, Builder, chain_of, check_exact, conv_gather_indices, pool_gather_indices
from qsnn_deploy.exporters._onnx_time import Lowering, build_body, drive_step_model, spike_compare
from qsnn_deploy.ir import Conv2d, Flatten, Graph, Input, Linear, SumPool2d

BATCH = "batch"
MAX_UNROLL = 1024
F64 = TensorProto.DOUBLE


def _synapse(b: Builder, name: str, node: Any, x: str, in_shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Emit a stateless node on float64 integers; returns (output, per-sample shape)."""
    if isinstance(node, Conv2d):
        idx, (o, ho, wo) = conv_gather_indices(in_shape, node)
        c, h, w = in_shape
        (ph, pw) = node.padding
        if ph or pw:
            pads = b.const(f"{name}_pads", [0, 0, ph, pw, 0, 0, ph, pw], TensorProto.INT64)
            h, w = h + 2 * ph, w + 2 * pw
            x = b.op("Pad", [x, pads], [BATCH, c, h, w], hint=f"{name}_padded")
        flat = b.op(
            "Reshape", [x, b.const(f"{name}_flat_shape", [-1, c * h * w], TensorProto.INT64)], [BATCH, c * h * w], hint=f"{name}_flat"
        )
        cols = b.op("Gather", [flat, b.const(f"{name}_im2col", idx, TensorProto.INT64)], [BATCH, *idx.shape], hint=f"{name}_cols", axis=1)
        weight = b.const(f"{name}_weight", node.weight.values.reshape(o, -1))
        y = b.op("MatMul", [weight, cols], [BATCH, o, ho * wo], hint=f"{name}_mm")
        out = (o, ho, wo)
        return b.op("Reshape", [y, b.const(f"{name}_shape", [-1, *out], TensorProto.INT64)], [BATCH, *out], hint=name), out
    if isinstance(node, SumPool2d):
        idx, (ho, wo) = pool_gather_indices(in_shape, node)
        c, h, w = in_shape
        planes = b.op(
            "Reshape", [x, b.const(f"{name}_plane_shape", [-1, c, h * w], TensorProto.INT64)], [BATCH, c, h * w], hint=f"{name}_planes"
        )
        win = b.op(
            "Gather", [planes, b.const(f"{name}_windows", idx, TensorProto.INT64)], [BATCH, c, *idx.shape], hint=f"{name}_win", axis=2
        )
        y = b.op("ReduceSum", [win, b.const(f"{name}_axis", [2], TensorProto.INT64)], [BATCH, c, ho * wo], hint=f"{name}_sum", keepdims=0)
        out = (c, ho, wo)
        return b.op("Reshape", [y, b.const(f"{name}_shape", [-1, *out], TensorProto.INT64)], [BATCH, *out], hint=name), out
    if isinstance(node, Flatten):
        out = (int(np.prod(in_shape)),)
        return b.op("Flatten", [x], [BATCH, *out], hint=name, axis=1), out
    if isinstance(node, Linear):
        weight = b.const(f"{name}_weight_t", node.weight.values.T)
        out = (node.weight.shape[0],)
        return b.op("MatMul", [x, weight], [BATCH, *out], hint=name), out
    raise ExportError(f"node {name!r}: the ONNX exporter cannot express {type(node).__name__}")  # pragma: no cover


def to_onnx(graph: Graph, *, timesteps: int | None = None, unroll: bool = False) -> onnx.ModelProto:
    """The ONNX model of ``graph`` (see the module docstring for its inputs and outputs).

    Args:
        graph: a chain graph from Input to Output.
        timesteps: T; required when ``unroll`` is set, recorded in metadata otherwise.
        unroll: emit T steps in one graph instead of one step per call.

    Raises:
        ExportError: the graph is not a chain, T is missing or too large, or some value
            could exceed 2^53 (float64 would no longer be exact).
    """
    chain = chain_of(graph)
    check_exact(graph, EXACT_F64, "float64")
    if unroll and (type(timesteps) is not int or not 1 <= timesteps <= MAX_UNROLL):
        raise ExportError(f"unroll needs timesteps between 1 and {MAX_UNROLL}, got {timesteps!r}")
    if timesteps is not None and (type(timesteps) is not int or timesteps < 1):
        raise ExportError(f"timesteps must be a positive integer, got {timesteps!r}")
    b = Builder(F64)
    inp: Input = chain[0][1]
    static = inp.encoding == "static"
    x_shape = [BATCH, *inp.shape] if (static or not unroll) else [BATCH, timesteps, *inp.shape]
    x = b.add_input("x", x_shape)
    contract: dict[str, Any] = {
        "format": "qsnn-deploy-onnx",
        "mode": "unrolled" if unroll else "step",
        "timesteps": timesteps,
        "encoding": inp.encoding,
        "input_dtype": inp.dtype.name,
        "carrier": "float64",
        "batch_dim": BATCH,
        "state": [],
    }
    lowering = Lowering(synapse=_synapse, spike=spike_compare, batch=BATCH, synapse_elem=F64)
    build_body(b, chain, x, static, timesteps, lowering, unroll, contract)
    doc = f"qsnn-deploy integer SNN ({contract['mode']}); float64 tensors carry exact integers"
    return b.model("qsnn_deploy", doc, contract, [("", OPSET)])


def export_onnx(graph: Graph, path: str | os.PathLike[str], *, timesteps: int | None = None, unroll: bool = False) -> Path:
    """Write :func:`to_onnx` to ``path`` atomically; identical graphs give identical bytes.

    The model is checked with ``onnx.checker.check_model(full_check=True)`` first.
    """
    model = to_onnx(graph, timesteps=timesteps, unroll=unroll)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejects the exported model: {exc}"[:500]) from None
    return write_bytes_atomic(path, model.SerializeToString(deterministic=True))


def run_onnx(model: onnx.ModelProto | str | os.PathLike[str], x: np.ndarray, timesteps: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run an exported model with onnxruntime: (counts (B, n_out), {lif: spikes (T, B, ...)}).

    ``x`` is (B, *shape) for static inputs, (B, T, *shape) for frames. Step models are
    driven for ``timesteps`` calls from a zero state; unrolled ones run once.
    """
    import onnxruntime as ort  # only this helper needs the runtime

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(os.fspath(model))
    props = {p.key: p.value for p in proto.metadata_props}
    if "qsnn_deploy" not in props:
        raise ExportError("not a qsnn-deploy ONNX model (no qsnn_deploy metadata)")
    contract = json.loads(props["qsnn_deploy"])
    if type(timesteps) is not int or timesteps < 1 or (contract["mode"] == "unrolled" and timesteps != contract["timesteps"]):
        raise ExportError(f"cannot run {timesteps!r} steps of a {contract['mode']} model (T={contract['timesteps']})")
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    xf = np.asarray(x, dtype=np.float64)
    if contract["mode"] == "unrolled":
        names = [o.name for o in sess.get_outputs()]
        res = dict(zip(names, sess.run(None, {"x": xf})))
        spikes = {lif: res[out].astype(np.uint8) for lif, out in contract["outputs"]["spikes"].items()}
        return res["counts"].astype(np.int64), spikes
    out_names = [o.name for o in sess.get_outputs()]
    return drive_step_model(lambda feeds: dict(zip(out_names, sess.run(None, feeds))), contract, xf, timesteps)
