"""Lowering of a frozen graph to the C parts of the C export (see :mod:`.c_export`).

:func:`lower` walks the chain once and, per node, fills a C template of ``c_templates/``
(package data) with the node's constants and bounds: a typed buffer per node output, one
function per node, and the calls that make up one time step. Buffer types come from interval
bounds (``int32_t`` when a sum provably fits, else ``int64_t``); the neuron arithmetic comes
from :class:`qsnn_deploy.sim.lif.LIFParams`, the simulator's own reading of a LIF node.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from string import Template
from typing import Any

import numpy as np

from qsnn_deploy.errors import ExportError, TargetError
from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Input, Linear, SumPool2d
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.sim.lif import LIFParams
from qsnn_deploy.sim.simulator import check_int64_range


def template(name: str) -> Template:
    """The C template ``name`` of ``c_templates/``."""
    return Template((resources.files("qsnn_deploy.exporters") / "c_templates" / name).read_text(encoding="utf-8"))


def ctype(dtype: IntType) -> str:
    """The narrowest <stdint.h> type holding every value of ``dtype``."""
    for bits in (8, 16, 32, 64):
        if dtype.bits <= bits:
            return f"{'' if dtype.signed else 'u'}int{bits}_t"
    raise ExportError(f"no C integer type holds {dtype.name}")  # pragma: no cover - IntType has at most 64 bits


def _sum_ctype(bound: float) -> str:
    """int32_t when every |sum| <= ``bound`` fits it, else int64_t (the simulator's width)."""
    return "int32_t" if bound < 2**31 else "int64_t"


@dataclass(frozen=True)
class Value:
    """What flows along one edge of the chain: a C buffer, its type, its bound and its shape."""

    buffer: str  # C expression of the array ("in" is the step's input)
    ctype: str
    bound: float  # max |value|
    shape: tuple[int, ...]
    events: bool  # 0/1 spikes (a node fed by it adds weight columns, no multiply)
    channels_last: bool = False  # a (C, H, W) map stored [h][w][c] (a Conv2d's output)
    clip: tuple[int, int] | None = None  # the Input's range, when its C type is wider

    def read(self, index: str) -> str:
        """C expression of element ``index``; Input values outside the Input type are clipped to it."""
        if self.clip is None:
            return f"in[{index}]"
        return f"qsnn_clamp(in[{index}], {self.clip[0]}, {self.clip[1]})"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Lowered:
    """The graph as C parts: constants, state buffers, functions and the step's calls."""

    constants: list[str] = field(default_factory=list)
    buffers: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    prefix_calls: list[str] = field(default_factory=list)  # evaluated at step 0 only (static input)
    calls: list[str] = field(default_factory=list)
    layers: list[tuple[str, str, int]] = field(default_factory=list)  # (name, C spike buffer, neurons)
    output: Value | None = None
    output_membrane: str | None = None  # the last LIF's membrane buffer, when the Output reads V[T-1]


def c_identifier(name: str, taken: set[str]) -> str:
    """A C identifier for node ``name``, unique among ``taken`` (which it joins)."""
    base = "node_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
    ident, k = base, 1
    while ident in taken:
        ident, k = f"{base}_{k}", k + 1
    taken.add(ident)
    return ident


def c_string(text: str) -> str:
    """``text`` as a C string literal (printable ASCII kept, everything else as octal escapes)."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        out.append(f"\\{ch}" if ch in '"\\' else ch if 32 <= byte < 127 and ch != "?" else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def comment_text(text: str) -> str:
    """``text`` safe inside a C comment: printable ASCII, no ``*/``, no ``?`` (trigraphs)."""
    return re.sub(r"[^ -~]|\?", "_", text).replace("*/", "*_")


def c_array(ctype_: str, name: str, values: np.ndarray, per_line: int = 16) -> str:
    """``static const ctype name[n] = {...};`` with the values in row-major order."""
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i : i + per_line]) for i in range(0, len(flat), per_line)]
    return f"static const {ctype_} {name}[{len(flat)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _row_gain(weight: np.ndarray) -> float:
    """The largest sum of |w| over one output's weights: how much a node can grow |input|."""
    return float(np.abs(weight.astype(np.float64)).reshape(weight.shape[0], -1).sum(axis=1).max())


def _synapse_fields(ident: str, src: Value, out_shape: tuple[int, ...], weight: np.ndarray, w_ctype: str, gain: float) -> dict[str, Any]:
    out_ctype = _sum_ctype(src.bound * gain)
    return {
        "fn": f"{ident}_forward",
        "in_ctype": src.ctype,
        "in_size": src.size,
        "out": f"{ident}_out",
        "out_ctype": out_ctype,
        "out_size": int(np.prod(out_shape)),
        "w_ctype": w_ctype,
        "wname": f"{ident}_w",
        "term": "its weight column" if src.events else "the value times its weight column",
        "add": "column[o]" if src.events else f"({out_ctype})(value * column[o])",
    }


def fusable_pool(node: Conv2d, following: object) -> bool:
    """True when ``following`` is a SumPool2d whose windows tile the conv output (kernel = stride):
    every conv output then belongs to at most one window and can add straight into its sum."""
    return isinstance(following, SumPool2d) and following.kernel == following.stride


def _lower_conv(low: Lowered, name: str, ident: str, node: Conv2d, src: Value, conv_shape: tuple[int, ...], pool: tuple | None) -> Value:
    """A Conv2d, fused with ``pool`` = (name, SumPool2d, output shape) when :func:`fusable_pool`."""
    w = node.weight.values
    o, i, kh, kw = w.shape
    out_shape = pool[2] if pool else conv_shape
    (pkh, pkw) = pool[1].kernel if pool else (1, 1)
    f = _synapse_fields(ident, src, out_shape, w, ctype(node.weight.dtype), _row_gain(w) * pkh * pkw)
    f.update(node=comment_text(name), in_shape=shape_text(src.shape), out_shape=shape_text(conv_shape), kh=kh, kw=kw)
    f.update(sh=node.stride[0], sw=node.stride[1], ph=node.padding[0], pw=node.padding[1])
    f.update(in_c=i, in_h=src.shape[1], in_w=src.shape[2], out_c=o)
    f.update(rows_used=out_shape[1] * pkh, cols_used=out_shape[2] * pkw, dst_w=out_shape[2])
    f.update(dst_row=f"row / {node.stride[0]}" + (f" / {pkh}" if pkh > 1 else ""))
    f.update(dst_col=f"col / {node.stride[1]}" + (f" / {pkw}" if pkw > 1 else ""))
    f["pool_note"] = (
        f"\n * Fused with the SumPool2d {comment_text(pool[0])} (kernel = stride = {pkh} x {pkw}): each output adds straight into its"
        f"\n * window's sum, {shape_text(out_shape)}; rows and columns after the last whole window are dropped."
        if pool
        else ""
    )
    h_, w_ = src.shape[1], src.shape[2]
    f["read"] = src.read(f"(h * {w_} + w) * {i} + i" if src.channels_last else f"(i * {h_} + h) * {w_} + w")
    # W[o][i][kr][kq] stored as [i][kr][kq][o]: one input position's fan-out is contiguous
    low.constants.append(c_array(f["w_ctype"], f["wname"], np.transpose(w, (1, 2, 3, 0))))
    out = _add_synapse(low, "conv2d.c", f, src, out_shape, _row_gain(w) * pkh * pkw)
    return dataclasses.replace(out, channels_last=True)


def _lower_linear(low: Lowered, name: str, ident: str, node: Linear, src: Value, out_shape: tuple[int, ...]) -> Value:
    w = node.weight.values
    f = _synapse_fields(ident, src, out_shape, w, ctype(node.weight.dtype), _row_gain(w))
    f.update(node=comment_text(name), read=src.read("i"))
    low.constants.append(c_array(f["w_ctype"], f["wname"], w.T))  # [i][o]: input i's column
    return _add_synapse(low, "linear.c", f, src, out_shape, _row_gain(w))


def _add_synapse(low: Lowered, template_name: str, f: dict[str, Any], src: Value, out_shape: tuple[int, ...], gain: float) -> Value:
    low.buffers.append(f"static {f['out_ctype']} {f['out']}[{f['out_size']}];")
    low.functions.append(template(template_name).substitute(f))
    low.calls.append(f"{f['fn']}({src.buffer});")
    return Value(f["out"], f["out_ctype"], src.bound * gain, out_shape, events=False)


def _lower_pool(low: Lowered, name: str, ident: str, node: SumPool2d, src: Value, out_shape: tuple[int, ...]) -> Value:
    bound = src.bound * node.kernel[0] * node.kernel[1]
    c_, h_, w_ = src.shape
    row, col = f"r * {node.stride[0]} + kr", f"q * {node.stride[1]} + kq"
    f = {
        "read": src.read(f"(({row}) * {w_} + {col}) * {c_} + c" if src.channels_last else f"(c * {h_} + {row}) * {w_} + {col}"),
        "node": comment_text(name),
        "fn": f"{ident}_forward",
        "in_shape": shape_text(src.shape),
        "out_shape": shape_text(out_shape),
        "in_ctype": src.ctype,
        "in_size": src.size,
        "in_h": src.shape[1],
        "in_w": src.shape[2],
        "out": f"{ident}_out",
        "out_ctype": _sum_ctype(bound),
        "out_c": out_shape[0],
        "out_h": out_shape[1],
        "out_w": out_shape[2],
        "kh": node.kernel[0],
        "kw": node.kernel[1],
        "sh": node.stride[0],
        "sw": node.stride[1],
    }
    low.buffers.append(f"static {f['out_ctype']} {f['out']}[{int(np.prod(out_shape))}];")
    low.functions.append(template("sumpool2d.c").substitute(f))
    low.calls.append(f"{f['fn']}({src.buffer});")
    return Value(f["out"], f["out_ctype"], bound, out_shape, events=False)


_EQUATIONS = {
    ("subtract", "delayed"): "V[t] = ovf(D(V[t-1]) + (A << F) + B[c] - S[t-1] * Theta[c]); S[t] = V[t] > Theta[c]",
    ("zero", "delayed"): "V[t] = ovf(D(V[t-1] * (1 - S[t-1])) + (A << F) + B[c]); S[t] = V[t] > Theta[c]",
    ("subtract", "immediate"): "V' = ovf(D(V[t-1]) + (A << F) + B[c]); S[t] = V' > Theta[c]; V[t] = V' - S[t] * Theta[c]",
    ("zero", "immediate"): "V' = ovf(D(V[t-1]) + (A << F) + B[c]); S[t] = V' > Theta[c]; V[t] = V' * (1 - S[t])",
}


def _membrane_code(p: LIFParams, status: int) -> str:
    """C statements setting ``v`` = ovf(rest + (A << F)), the overflow policy once on the full sum."""
    lo, hi, pad = f"INT64_C({p.state.min})", f"INT64_C({p.state.max})", " " * 12
    if p.overflow == "wrap":
        return f"{pad}v = qsnn_membrane_wrap(rest, a, {p.input_shift}, {p.state.bits});"
    if p.overflow == "saturate":
        return f"{pad}v = qsnn_clamp(qsnn_membrane_sum(rest, a, {p.input_shift}), {lo}, {hi});"
    return f"{pad}v = qsnn_membrane_sum(rest, a, {p.input_shift});\n{pad}if (v < {lo} || v > {hi}) return {status};"


def _lower_flatten(low: Lowered, name: str, ident: str, src: Value, out_shape: tuple[int, ...]) -> Value:
    """C order is the memory order of every buffer but a Conv2d's channels-last output, which is copied back."""
    if not src.channels_last:
        return dataclasses.replace(src, shape=out_shape)
    channels, size = src.shape[0], src.size
    f = {"node": comment_text(name), "fn": f"{ident}_forward", "shape": shape_text(src.shape), "ctype": src.ctype, "size": size}
    f.update(out=f"{ident}_out", channels=channels, plane=size // channels)
    low.buffers.append(f"static {src.ctype} {f['out']}[{size}];")
    low.functions.append(template("to_chw.c").substitute(f))
    low.calls.append(f"{f['fn']}({src.buffer});")
    return Value(f["out"], src.ctype, src.bound, out_shape, src.events)


def _lower_lif(low: Lowered, name: str, ident: str, node: LIF, src: Value) -> Value:
    p = LIFParams.from_node(node, name)
    channels = node.threshold.shape[0]
    state_ctype = ctype(node.state)
    status = len(low.layers) + 1
    cmp = ">" if p.compare == "gt" else ">="
    immediate = {"subtract": "if (s) v -= thr;", "zero": "if (s) v = 0;"}[p.reset] if p.reset_timing == "immediate" else ""
    f = {
        "node": comment_text(name),
        "fn": f"{ident}_step",
        "cname": ident,
        "in_ctype": src.ctype,
        "size": src.size,
        "channels": channels,
        "plane": src.size // channels,
        "state": node.state.name,
        "state_ctype": state_ctype,
        "decay_mul": p.decay_mul,
        "decay_shift": p.decay_shift,
        "round_add": p.round_add,
        "rounding": node.rounding,
        "input_shift": p.input_shift,
        "overflow": p.overflow,
        "compare": p.compare,
        "reset": p.reset,
        "reset_timing": p.reset_timing,
        "equation": _EQUATIONS[(p.reset, p.reset_timing)].replace(">", cmp),
        "status": status,
        "v_prev": f"{ident}_s[n] ? 0 : {ident}_v[n]" if (p.reset, p.reset_timing) == ("zero", "delayed") else f"{ident}_v[n]",
        "decay": "qsnn_decay_split" if p.decay_needs_split else "qsnn_decay",
        "delayed_subtract": f" - ({ident}_s[n] ? thr : 0)" if (p.reset, p.reset_timing) == ("subtract", "delayed") else "",
        "membrane": _membrane_code(p, status),
        "read": src.read(f"p * {channels} + c" if src.channels_last else "n"),
        "cmp": cmp,
        "immediate_reset": "\n" + " " * 12 + immediate if immediate else "",
    }
    low.constants.append(c_array(state_ctype, f"{ident}_threshold", node.threshold.values))
    low.constants.append(c_array(state_ctype, f"{ident}_bias", node.bias.values))
    low.buffers.append(f"static {state_ctype} {ident}_v[{src.size}]; /* membranes V */")
    low.buffers.append(f"static uint8_t {ident}_s[{src.size}]; /* spikes S (of the last step) */")
    low.reset.append(f"    for (n = 0; n < {src.size}; n++) {ident}_v[n] = 0;\n    for (n = 0; n < {src.size}; n++) {ident}_s[n] = 0;")
    low.functions.append(template("lif.c").substitute(f))
    low.calls.append(f"status = {f['fn']}({src.buffer});\n    if (status != QSNN_OK) return status;")
    low.layers.append((name, f"{ident}_s", src.size))
    return Value(f"{ident}_s", "uint8_t", 1.0, src.shape, events=True)


def lower(graph: Graph) -> Lowered:
    """The graph's C parts, node by node in chain order.

    Raises:
        ExportError: not a chain ending in LIF [-> Flatten] -> Output, an input type wider
            than 32 bits, or a synaptic sum that could leave int64.
    """
    try:
        check_int64_range(graph)
    except TargetError as exc:
        raise ExportError(f"C export: {exc}") from None
    chain, shapes = graph.chain(), graph.shapes()
    membrane = chain[-1][1].readout == "membrane"  # outputs V[T-1] as int32, not uint32 spike counts
    if membrane and (not isinstance(chain[-2][1], LIF) or chain[-2][1].state.bits > 32):
        raise ExportError("C export: a membrane readout needs its LIF directly before the Output, with a state of at most 32 bits")
    inp: Input = graph.input
    if inp.dtype.bits > 32:
        raise ExportError(f"C export: input type {inp.dtype.name} is wider than 32 bits")
    one_bit = not inp.dtype.signed and inp.dtype.bits == 1
    bound = float(max(abs(inp.dtype.min), abs(inp.dtype.max)))
    c_type = IntType(int(re.search(r"\d+", ctype(inp.dtype))[0]), signed=inp.dtype.signed)
    clip = None if (c_type.min, c_type.max) == (inp.dtype.min, inp.dtype.max) else (inp.dtype.min, inp.dtype.max)
    value = Value("x", "qsnn_input_t", bound, inp.shape, events=one_bit, clip=clip)
    low, taken = Lowered(), set()
    nodes, k = chain[1:-1], 0
    while k < len(nodes):
        name, node = nodes[k]
        ident = c_identifier(name, taken)
        calls_before = len(low.calls)
        if isinstance(node, Conv2d):
            following = nodes[k + 1] if k + 1 < len(nodes) else (None, None)
            pool = (following[0], following[1], shapes[following[0]]) if fusable_pool(node, following[1]) else None
            value = _lower_conv(low, name, ident, node, value, shapes[name], pool)
            k += 1 if pool else 0
        elif isinstance(node, Linear):
            value = _lower_linear(low, name, ident, node, value, shapes[name])
        elif isinstance(node, SumPool2d):
            value = _lower_pool(low, name, ident, node, value, shapes[name])
        elif isinstance(node, Flatten):
            value = _lower_flatten(low, name, ident, value, shapes[name])
        elif isinstance(node, LIF):
            value = _lower_lif(low, name, ident, node, value)
        if inp.encoding == "static" and not low.layers:  # before the first LIF: the same every step
            low.prefix_calls += low.calls[calls_before:]
            del low.calls[calls_before:]
        k += 1
    if not low.layers or value.buffer != low.layers[-1][1]:
        raise ExportError("C export: the Output must be fed by a LIF layer (optionally through a Flatten)")
    low.output = value
    low.output_membrane = f"{low.layers[-1][1][:-2]}_v" if membrane else None
    return low


__all__ = ["Lowered", "Value", "c_array", "c_identifier", "c_string", "comment_text", "ctype", "lower", "shape_text", "template"]
