"""The time structure shared by the ONNX and QONNX exporters: one LIF step, step and unrolled graphs.

:func:`lif_step` emits the integer LIF of :class:`qsnn_deploy.ir.nodes.LIF` as float64 ops;
:func:`build_step` and :func:`build_unrolled` walk the chain and wire state and outputs. What
differs between the formats (how synapses and spikes are lowered, in which float type) comes
in as a :class:`Lowering`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import TensorProto

from qsnn_deploy.errors import ExportError
from qsnn_deploy.exporters._onnx_common import Builder, Dim, channel_shape, state_names
from qsnn_deploy.ir import LIF, Output

SpikeFn = Callable[[Builder, str, LIF, str, tuple[Dim, ...]], str]


def lif_step(
    b: Builder, name: str, node: LIF, a: str, shape: tuple[Dim, ...], v_in: str | None, s_in: str | None, spike: SpikeFn
) -> tuple[str, str, str | None]:
    """One LIF step in float64 ops: returns (V[t], S[t], overflow flag or None).

    ``a`` is the synaptic sum (B, *shape); ``v_in``/``s_in`` the previous membrane and
    spikes. ``v_in=None`` is the first step (V = S = 0, so decay and reset vanish); ``s_in``
    is only read for delayed reset. Implements the docstring of
    :class:`qsnn_deploy.ir.nodes.LIF`; ``spike`` emits the comparison.
    """
    chan = channel_shape(shape[1:])
    thr = node.threshold.values.reshape(chan)
    cur = a
    if node.input_shift:
        cur = b.op("Mul", [cur, b.const(f"{name}_input_scale", 2.0**node.input_shift)], shape, hint=f"{name}_shifted")
    if node.bias.values.any():
        cur = b.op("Add", [cur, b.const(f"{name}_bias", node.bias.values.reshape(chan))], shape, hint=f"{name}_current")
    delayed = node.reset_timing == "delayed"
    if v_in is None:
        v = cur
    else:
        v = v_in
        if delayed and node.reset == "zero" and s_in is not None:
            keep = b.op("Sub", [b.const(f"{name}_one", 1.0), s_in], shape, hint=f"{name}_keep")
            v = b.op("Mul", [v, keep], shape, hint=f"{name}_v_kept")
        v = b.op("Add", [_decay(b, name, node, v, shape), cur], shape, hint=f"{name}_v_sum")
    if v_in is not None and delayed and node.reset == "subtract" and s_in is not None:
        sub = b.op("Mul", [s_in, b.const(f"{name}_threshold", thr)], shape, hint=f"{name}_reset")
        v = b.op("Sub", [v, sub], shape, hint=f"{name}_v_reset")
    flag = _overflow_flag(b, name, node, v, shape) if node.overflow == "error" else None
    v = _overflow(b, name, node, v, shape)
    s = spike(b, name, node, v, shape)
    if not delayed:
        if node.reset == "subtract":
            sub = b.op("Mul", [s, b.const(f"{name}_threshold", thr)], shape, hint=f"{name}_reset")
            v = b.op("Sub", [v, sub], shape, hint=f"{name}_v_reset")
        else:
            keep = b.op("Sub", [b.const(f"{name}_one", 1.0), s], shape, hint=f"{name}_keep")
            v = b.op("Mul", [v, keep], shape, hint=f"{name}_v_reset")
    return v, s, flag


def _decay(b: Builder, name: str, node: LIF, v: str, shape: tuple[Dim, ...]) -> str:
    """D(V) = Floor((V*mul + r) / 2^shift): the arithmetic shift, exact for |V*mul| < 2^53."""
    if node.decay_mul == 2**node.decay_shift:
        return v  # D(V) = V + floor(r / 2^shift) = V, since r < 2^shift
    if node.decay_mul == 0:
        return b.op("Mul", [v, b.const(f"{name}_zero", 0.0)], shape, hint=f"{name}_v_decayed")
    r = 2 ** (node.decay_shift - 1) if node.rounding == "half_up" and node.decay_shift > 0 else 0
    x = b.op("Mul", [v, b.const(f"{name}_decay_mul", float(node.decay_mul))], shape, hint=f"{name}_v_mul")
    if r:
        x = b.op("Add", [x, b.const(f"{name}_round", float(r))], shape, hint=f"{name}_v_round")
    x = b.op("Div", [x, b.const(f"{name}_decay_div", 2.0**node.decay_shift)], shape, hint=f"{name}_v_div")
    return b.op("Floor", [x], shape, hint=f"{name}_v_decayed")


def _overflow(b: Builder, name: str, node: LIF, v: str, shape: tuple[Dim, ...]) -> str:
    lo, hi = node.state.min, node.state.max
    if node.overflow == "wrap":
        # V - 2^bits * Floor((V - min) / 2^bits): two's-complement wrap, exact in float
        span = float(2**node.state.bits)
        off = b.op("Sub", [v, b.const(f"{name}_state_min", float(lo))], shape, hint=f"{name}_v_offset")
        q = b.op("Floor", [b.op("Div", [off, b.const(f"{name}_span", span)], shape, hint=f"{name}_v_q")], shape, hint=f"{name}_v_wraps")
        return b.op(
            "Sub", [v, b.op("Mul", [q, b.const(f"{name}_span", span)], shape, hint=f"{name}_v_wrapped")], shape, hint=f"{name}_v_ovf"
        )
    # saturate; "error" also clips (the run is invalid anyway, the flag output says so)
    return b.op("Clip", [v, b.const(f"{name}_state_min", float(lo)), b.const(f"{name}_state_max", float(hi))], shape, hint=f"{name}_v_ovf")


def _overflow_flag(b: Builder, name: str, node: LIF, v: str, shape: tuple[Dim, ...]) -> str:
    """Scalar 1.0 if any membrane left the state range (overflow="error"), else 0.0."""
    lo = b.op("Less", [v, b.const(f"{name}_state_min", float(node.state.min))], shape, hint=f"{name}_below", elem=TensorProto.BOOL)
    hi = b.op("Greater", [v, b.const(f"{name}_state_max", float(node.state.max))], shape, hint=f"{name}_above", elem=TensorProto.BOOL)
    bad = b.op(
        "Cast", [b.op("Or", [lo, hi], shape, hint=f"{name}_outside", elem=TensorProto.BOOL)], shape, hint=f"{name}_outside_f", to=b.elem
    )
    return b.op("ReduceMax", [bad], [], hint=f"{name}_overflow", keepdims=0)


def spike_compare(b: Builder, name: str, node: LIF, v: str, shape: tuple[Dim, ...]) -> str:
    """S = Cast(V > threshold) (compare "gt") or Cast(V >= threshold) ("ge")."""
    thr = b.const(f"{name}_threshold", node.threshold.values.reshape(channel_shape(shape[1:])))
    cmp = b.op("Greater" if node.compare == "gt" else "GreaterOrEqual", [v, thr], shape, hint=f"{name}_fire", elem=TensorProto.BOOL)
    return b.op("Cast", [cmp], shape, hint=f"{name}_spikes", to=b.elem)


@dataclass(frozen=True)
class Lowering:
    """How one exporter lowers the stateless nodes; the time structure is shared."""

    #: emit a Conv2d / SumPool2d / Flatten / Linear: (builder, name, node, x, shape) -> (y, shape)
    synapse: Callable[[Builder, str, Any, str, tuple[int, ...]], tuple[str, tuple[int, ...]]]
    #: emit the spike comparison of a LIF
    spike: SpikeFn
    #: the batch dimension: a symbol, or a fixed size
    batch: Dim
    #: element type the synapse ops compute in (LIF ops always use float64)
    synapse_elem: int = TensorProto.DOUBLE


class _Cursor:
    """The current tensor while walking the chain, with its element type (casts on demand)."""

    def __init__(self, b: Builder, name: str, elem: int, shape: tuple[int, ...], batch: Dim) -> None:
        self.b, self.name, self.elem, self.shape, self.batch = b, name, elem, shape, batch
        self.datatype: str | None = None  # integer type of the values, annotated on casts (qonnx)

    def set(self, name: str, elem: int, datatype: str | None = None) -> None:
        self.name, self.elem, self.datatype = name, elem, datatype

    def as_elem(self, elem: int) -> str:
        if self.elem != elem:
            self.name = self.b.op(
                "Cast", [self.name], [self.batch, *self.shape], hint=f"{self.name.split('__')[0]}_cast", elem=elem, to=elem
            )
            self.elem = elem
            if self.datatype is not None and self.b.annotate_types:
                # qonnx would type a Cast output FLOAT32; spikes are BINARY for its cost analysis
                self.b.annotations[self.name] = self.datatype
        return self.name


def _identity_out(b: Builder, x: str, out: str, shape: Sequence[Dim]) -> None:
    b.op("Identity", [x], list(shape), hint=out, out=out)


def build_step(b: Builder, chain: list[tuple[str, Any]], x: str, low: Lowering) -> list[dict[str, Any]]:
    """One time step: state inputs/outputs per LIF, output ``out_spikes``; returns the state table."""
    state: list[dict[str, Any]] = []
    cur = _Cursor(b, x, b.input_elem(x), chain[0][1].shape, low.batch)
    last_v = ""
    for name, node in chain[1:]:
        full = (low.batch, *cur.shape)
        if isinstance(node, LIF):
            names = state_names(name)
            v_in = b.add_input(names["v_in"], full, annotate=node.state.name)
            s_in = b.add_input(names["s_in"], full, annotate="BINARY") if node.reset_timing == "delayed" else None
            v, s, flag = lif_step(b, name, node, cur.as_elem(TensorProto.DOUBLE), full, v_in, s_in, low.spike)
            last_v = v
            _identity_out(b, v, names["v_out"], full)
            _identity_out(b, s, names["s_out"], full)
            if flag is not None:
                _identity_out(b, flag, names["overflow"], [])
            state.append(
                {
                    "lif": name,
                    "shape": list(cur.shape),
                    "state_dtype": node.state.name,
                    "v_in": names["v_in"],
                    "v_out": names["v_out"],
                    "s_in": names["s_in"] if s_in else None,
                    "s_out": names["s_out"],
                    "overflow": names["overflow"] if flag else None,
                }
            )
            cur.set(s, TensorProto.DOUBLE, "BINARY")
        elif isinstance(node, Output) and node.readout == "membrane":
            _identity_out(b, last_v, "out_membrane", full)  # V after this step; the last call's is the output
        elif isinstance(node, Output):
            _identity_out(b, cur.as_elem(TensorProto.DOUBLE), "out_spikes", full)
        else:
            y, cur.shape = low.synapse(b, name, node, cur.as_elem(low.synapse_elem), cur.shape)
            cur.set(y, low.synapse_elem)
    return state


def build_unrolled(b: Builder, chain: list[tuple[str, Any]], x: str, static: bool, steps: int, low: Lowering) -> None:
    """T steps in one graph: outputs ``counts`` and ``<lif>_spikes`` (T, B, ...) per LIF."""
    carried: dict[str, tuple[str | None, str | None]] = {name: (None, None) for name, n in chain if isinstance(n, LIF)}
    spikes: dict[str, list[str]] = {name: [] for name in carried}
    flags: dict[str, list[str]] = {name: [] for name in carried}
    finals: list[str] = []
    membrane = chain[-1][1].readout == "membrane"
    cache: dict[str, tuple[str, int, tuple[int, ...]]] = {}  # a static input's layers before the first LIF: once
    in_elem = b.input_elem(x)
    t_shape: tuple[Dim, ...] = ()
    for t in range(steps):
        shape: tuple[int, ...] = chain[0][1].shape
        if static:
            cur = _Cursor(b, x, in_elem, shape, low.batch)
        else:
            index = b.const(f"t{t}", np.int64(t), TensorProto.INT64)
            cur = _Cursor(
                b, b.op("Gather", [x, index], [low.batch, *shape], hint=f"x_t{t}", elem=in_elem, axis=1), in_elem, shape, low.batch
            )
        invariant = static
        for name, node in chain[1:]:
            full = (low.batch, *cur.shape)
            if isinstance(node, LIF):
                invariant = False
                v_prev, s_prev = carried[name]
                v, s, flag = lif_step(b, name, node, cur.as_elem(TensorProto.DOUBLE), full, v_prev, s_prev, low.spike)
                carried[name] = (v, s)
                last_v = v
                spikes[name].append(b.op("Unsqueeze", [s, b.const("axis0", [0], TensorProto.INT64)], [1, *full], hint=f"{name}_s{t}"))
                if flag is not None:
                    flags[name].append(flag)
                cur.set(s, TensorProto.DOUBLE, "BINARY")
            elif isinstance(node, Output):
                finals.append(last_v if membrane else cur.as_elem(TensorProto.DOUBLE))
                t_shape = full
            elif invariant and name in cache:
                cur.name, cur.elem, cur.shape = cache[name]
            else:
                y, cur.shape = low.synapse(b, name, node, cur.as_elem(low.synapse_elem), cur.shape)
                cur.set(y, low.synapse_elem)
                if invariant:
                    cache[name] = (cur.name, cur.elem, cur.shape)
    # the Output's values: spike counts summed over the steps, or the last step's membrane
    total = b.op("Sum", finals, t_shape, hint="counts_sum") if len(finals) > 1 and not membrane else finals[-1]
    _identity_out(b, total, "counts", t_shape)
    for name, parts in spikes.items():
        dims = b.info[parts[0]].type.tensor_type.shape.dim
        shape_t = [steps, *[d.dim_param or d.dim_value for d in dims][1:]]
        cat = b.op("Concat", parts, shape_t, hint=f"{name}_cat", axis=0) if len(parts) > 1 else parts[0]
        _identity_out(b, cat, state_names(name)["spikes"], shape_t)
        if flags[name]:
            worst = b.op("Max", flags[name], [], hint=f"{name}_ovf_any") if len(flags[name]) > 1 else flags[name][0]
            _identity_out(b, worst, state_names(name)["overflow"], [])


def drive_step_model(
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    contract: dict[str, Any],
    x: np.ndarray,
    timesteps: int,
    x_dtype: Any = np.float64,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run a one-step model for ``timesteps`` calls from a zero state, feeding its state back.

    ``run`` maps input feeds to named outputs (onnxruntime, qonnx's ``execute_onnx``, ...).
    Returns (spike counts (B, n_out), {lif: spikes (T, B, ...)}).
    """
    static = contract["encoding"] == "static"
    feeds = {st[k]: np.zeros((x.shape[0], *st["shape"]), dtype=np.float64) for st in contract["state"] for k in ("v_in", "s_in") if st[k]}
    record: dict[str, list[np.ndarray]] = {st["lif"]: [] for st in contract["state"]}
    counts = None
    membrane = contract.get("readout") == "membrane"
    for t in range(timesteps):
        feeds["x"] = np.asarray(x if static else x[:, t], dtype=x_dtype)
        res = run(feeds)
        for st in contract["state"]:
            feeds[st["v_in"]] = res[st["v_out"]]
            if st["s_in"]:
                feeds[st["s_in"]] = res[st["s_out"]]
            record[st["lif"]].append(res[st["s_out"]].astype(np.uint8))
        if membrane:
            counts = res["out_membrane"]  # V[T-1]: the last step's
        else:
            counts = res["out_spikes"] if counts is None else counts + res["out_spikes"]
    return np.asarray(counts).astype(np.int64), {k: np.stack(v) for k, v in record.items()}


def build_body(
    b: Builder,
    chain: list[tuple[str, Any]],
    x: str,
    static: bool,
    timesteps: int | None,
    low: Lowering,
    unroll: bool,
    contract: dict[str, Any],
) -> None:
    """Build the step or unrolled body and record its state and outputs in ``contract``.

    ``contract["readout"]`` is the Output's readout; a ``membrane`` step model outputs
    ``out_membrane`` (V after the step) instead of ``out_spikes``, and an unrolled one V[T-1]
    as ``counts``.
    """
    readout = chain[-1][1].readout
    if readout == "membrane" and not isinstance(chain[-2][1], LIF):
        raise ExportError("an Output with readout 'membrane' must follow its LIF layer directly")
    contract["readout"] = readout
    if unroll:
        build_unrolled(b, chain, x, static, timesteps or 1, low)
        contract["outputs"] = {"counts": "counts", "spikes": {n: state_names(n)["spikes"] for n, v in chain if isinstance(v, LIF)}}
    else:
        contract["state"] = build_step(b, chain, x, low)
        contract["outputs"] = {"membrane": "out_membrane"} if readout == "membrane" else {"spikes": "out_spikes"}
