"""Nodes of the frozen integer graph. Each is a frozen dataclass checked on construction.

Shapes are per sample, without batch or time: (C, H, W) for maps, (N,) for vectors.
All arithmetic is integer; the exact semantics of each node is in its docstring, and the
bit-accurate reference is :mod:`qsnn_deploy.sim.reference`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from qsnn_deploy.encodings import ENCODINGS, STATIC
from qsnn_deploy.errors import GraphError
from qsnn_deploy.ir.arithmetic import NeuronArithmetic
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.ir.tensor import IntTensor

Shape = tuple[int, ...]


def _require(cond: bool, node: str, msg: str) -> None:
    if not cond:
        raise GraphError(f"{node}: {msg}")


def _pair(value: Any, node: str, field: str, minimum: int) -> None:
    _require(
        isinstance(value, tuple) and len(value) == 2 and all(type(v) is int and v >= minimum for v in value),
        node,
        f"{field} must be a pair of integers >= {minimum}, got {value!r}",
    )


@dataclass(frozen=True, kw_only=True)
class Node:
    """Base of all IR nodes (generic ``to_dict``/``from_dict`` over the dataclass fields)."""

    op: ClassVar[str] = "Node"

    def output_shape(self, in_shape: Shape) -> Shape:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op}
        for f in dataclasses.fields(self):
            out[f.name] = _encode(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Node:
        """Build a node from :meth:`to_dict` output; any malformed field is a GraphError."""
        if not isinstance(data, dict):
            raise GraphError(f"node must be an object, got {type(data).__name__}")
        op = data.get("op")
        node_cls = NODE_TYPES.get(op) if isinstance(op, str) else None
        if node_cls is None:
            raise GraphError(f"unknown node op {op!r}; known: {', '.join(NODE_TYPES)}"[:300])
        hints = typing.get_type_hints(node_cls)
        fields = {f.name: f for f in dataclasses.fields(node_cls)}
        extra = set(data) - set(fields) - {"op"}
        if extra:
            raise GraphError(f"{op}: unknown fields {sorted(extra)}"[:300])
        kwargs = {}
        for name, f in fields.items():
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise GraphError(f"{op}: missing field {name!r}")
                continue
            kwargs[name] = _decode(hints[name], data[name], f"{op}.{name}")
        return node_cls(**kwargs)


def _encode(value: Any) -> Any:
    if isinstance(value, IntTensor):
        return value.to_dict()
    if isinstance(value, IntType):
        return value.name
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(hint: Any, value: Any, where: str) -> Any:
    if hint is IntTensor:
        return IntTensor.from_dict(value)
    if hint is IntType:
        return IntType.parse(value)
    if hint is bool:
        _require(type(value) is bool, where, f"must be a boolean, got {type(value).__name__}")
        return value
    if hint is int:
        _require(type(value) is int, where, f"must be an integer, got {type(value).__name__}")
        return value
    if hint is str:
        _require(type(value) is str, where, f"must be a string, got {type(value).__name__}")
        return value
    if typing.get_origin(hint) is tuple:
        _require(isinstance(value, list) and len(value) <= 8, where, "must be a short list")
        return tuple(_decode(int, v, where) for v in value)
    raise GraphError(f"{where}: cannot decode field of type {hint}")  # pragma: no cover - programming error


@dataclass(frozen=True, kw_only=True)
class Input(Node):
    """Integer input of ``shape`` (C, H, W).

    ``encoding``: ``static`` — the same sample (e.g. 8-bit pixels) enters at every step;
    ``frames`` — one frame of event counts per step.
    """

    op: ClassVar[str] = "Input"
    shape: Shape
    dtype: IntType
    encoding: str = STATIC

    def __post_init__(self) -> None:
        _require(
            isinstance(self.shape, tuple) and 1 <= len(self.shape) <= 3 and all(type(s) is int and 0 < s <= 65536 for s in self.shape),
            "Input",
            f"shape must be 1-3 positive integers, got {self.shape!r}",
        )
        _require(isinstance(self.dtype, IntType), "Input", "dtype must be an IntType")
        _require(self.encoding in ENCODINGS, "Input", f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")

    def output_shape(self, in_shape: Shape) -> Shape:
        return self.shape


@dataclass(frozen=True, kw_only=True)
class Conv2d(Node):
    """Integer 2-D convolution, no bias: y[o] = sum_{i,kh,kw} w[o,i,kh,kw] * x[i, s*h+kh-p, s*w+kw-p]."""

    op: ClassVar[str] = "Conv2d"
    weight: IntTensor
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        _require(
            isinstance(self.weight, IntTensor) and len(self.weight.shape) == 4 and min(self.weight.shape) > 0,
            "Conv2d",
            "weight must be a non-empty IntTensor of shape (out, in, kh, kw)",
        )
        _pair(self.stride, "Conv2d", "stride", 1)
        _pair(self.padding, "Conv2d", "padding", 0)

    def output_shape(self, in_shape: Shape) -> Shape:
        o, i, kh, kw = self.weight.shape
        _require(len(in_shape) == 3 and in_shape[0] == i, "Conv2d", f"expects input (C={i}, H, W), got {in_shape}")
        h = (in_shape[1] + 2 * self.padding[0] - kh) // self.stride[0] + 1
        w = (in_shape[2] + 2 * self.padding[1] - kw) // self.stride[1] + 1
        _require(h > 0 and w > 0, "Conv2d", f"kernel {kh}x{kw} does not fit input {in_shape}")
        return (o, h, w)


@dataclass(frozen=True, kw_only=True)
class SumPool2d(Node):
    """Sum over ``kernel`` windows (average pooling with its 1/k^2 folded into the next scale)."""

    op: ClassVar[str] = "SumPool2d"
    kernel: tuple[int, int]
    stride: tuple[int, int]

    def __post_init__(self) -> None:
        _pair(self.kernel, "SumPool2d", "kernel", 1)
        _pair(self.stride, "SumPool2d", "stride", 1)

    def output_shape(self, in_shape: Shape) -> Shape:
        _require(len(in_shape) == 3, "SumPool2d", f"expects input (C, H, W), got {in_shape}")
        h = (in_shape[1] - self.kernel[0]) // self.stride[0] + 1
        w = (in_shape[2] - self.kernel[1]) // self.stride[1] + 1
        _require(h > 0 and w > 0, "SumPool2d", f"kernel {self.kernel} does not fit input {in_shape}")
        return (in_shape[0], h, w)


@dataclass(frozen=True, kw_only=True)
class Flatten(Node):
    """(C, H, W) -> (C*H*W,) in C order (channel-major, as torch's ``flatten(1)``)."""

    op: ClassVar[str] = "Flatten"

    def output_shape(self, in_shape: Shape) -> Shape:
        n = 1
        for s in in_shape:
            n *= s
        return (n,)


@dataclass(frozen=True, kw_only=True)
class Linear(Node):
    """Integer dense layer, no bias: y[o] = sum_i w[o, i] * x[i]."""

    op: ClassVar[str] = "Linear"
    weight: IntTensor

    def __post_init__(self) -> None:
        _require(
            isinstance(self.weight, IntTensor) and len(self.weight.shape) == 2 and min(self.weight.shape) > 0,
            "Linear",
            "weight must be a non-empty IntTensor of shape (out, in)",
        )

    def output_shape(self, in_shape: Shape) -> Shape:
        _require(in_shape == (self.weight.shape[1],), "Linear", f"expects input ({self.weight.shape[1]},), got {in_shape}")
        return (self.weight.shape[0],)


@dataclass(frozen=True, kw_only=True)
class LIF(Node):
    r"""Integer leaky integrate-and-fire neurons, per-channel threshold and bias.

    With A[t] the integer synaptic sum entering the node, c the channel of a neuron
    (axis 0 of the per-sample shape), and all arithmetic in wide integers::

        I[t]     = (A[t] << input_shift) + bias[c]
        D(V)     = (V * decay_mul + r) >> decay_shift          # arithmetic shift
                   r = 0 (rounding "floor") or 2^(decay_shift-1) ("half_up")
        delayed   subtract: V[t] = ovf(D(V[t-1]) + I[t] - S[t-1] * threshold[c])
        delayed   zero:     V[t] = ovf(D(V[t-1] * (1 - S[t-1])) + I[t])
        immediate (either): V[t] = ovf(D(V[t-1]) + I[t]), then after the spike test
                            V[t] -= S[t] * threshold[c] (subtract) or V[t] *= 1 - S[t] (zero)
        S[t]     = V[t] > threshold[c]   (compare "gt")   or   >= ("ge")

    ``ovf`` applies ``overflow`` at the ``state`` width: ``saturate`` clips, ``wrap`` wraps
    (two's complement), ``error`` stops the simulation. V[-1] = 0, S[-1] = 0. snnTorch's
    ``Leaky`` is delayed / subtract / gt.
    """

    op: ClassVar[str] = "LIF"
    threshold: IntTensor
    bias: IntTensor
    decay_mul: int
    decay_shift: int
    input_shift: int = 0
    state: IntType
    reset: str = "subtract"
    compare: str = "gt"
    reset_timing: str = "delayed"
    rounding: str = "half_up"
    overflow: str = "saturate"

    def __post_init__(self) -> None:
        _require(
            isinstance(self.threshold, IntTensor) and len(self.threshold.shape) == 1 and self.threshold.shape[0] > 0,
            "LIF",
            "threshold must be a 1-D IntTensor (one per channel)",
        )
        _require(
            isinstance(self.bias, IntTensor) and self.bias.shape == self.threshold.shape,
            "LIF",
            f"bias must be an IntTensor shaped like threshold {self.threshold.shape}",
        )
        _require(bool((self.threshold.values > 0).all()), "LIF", "thresholds must be positive")
        try:
            self.arithmetic  # noqa: B018 - its construction checks the arithmetic fields
        except GraphError as exc:
            raise GraphError(f"LIF: {exc}") from None
        _require(
            type(self.decay_mul) is int and 0 <= self.decay_mul <= 2**self.decay_shift,
            "LIF",
            f"decay_mul must be 0..2^decay_shift (decay factor <= 1), got {self.decay_mul!r}",
        )
        _require(
            type(self.input_shift) is int and 0 <= self.input_shift <= 40, "LIF", f"input_shift must be 0..40, got {self.input_shift!r}"
        )
        _require(
            self.state.contains(self.threshold.values) and self.state.contains(self.bias.values),
            "LIF",
            f"threshold and bias must fit the state type {self.state.name}",
        )

    @property
    def arithmetic(self) -> NeuronArithmetic:
        """The node's neuron arithmetic (its state, decay shift, rounding, overflow, compare, reset fields)."""
        mine = {f.name for f in dataclasses.fields(self)}
        return NeuronArithmetic(**{n: getattr(self, n) for n in NeuronArithmetic.field_names() if n in mine})

    @property
    def decay(self) -> float:
        """The decay factor decay_mul / 2^decay_shift (beta)."""
        return self.decay_mul / 2**self.decay_shift

    def output_shape(self, in_shape: Shape) -> Shape:
        _require(
            len(in_shape) >= 1 and in_shape[0] == self.threshold.shape[0],
            "LIF",
            f"has {self.threshold.shape[0]} channels but its input is {in_shape}",
        )
        return in_shape


@dataclass(frozen=True, kw_only=True)
class Output(Node):
    """Network output, per neuron of the LIF layer it reads (``readout``):

    - ``spike_count`` (default): the number of steps t with S[t] = 1;
    - ``membrane``: the membrane V[T-1] after the last step, a non-spiking readout (e.g. a LIF
      layer with ``decay_mul = 0`` and a threshold it cannot reach gives V[T-1] = A[T-1] + B,
      a linear classifier of the spikes at the last step). The Output must follow the LIF
      directly (no Flatten).

    The predicted class is the neuron with the largest value, the lowest index on ties.
    """

    op: ClassVar[str] = "Output"
    readout: str = "spike_count"

    READOUTS: ClassVar[tuple[str, ...]] = ("spike_count", "membrane")

    def __post_init__(self) -> None:
        _require(self.readout in self.READOUTS, "Output", f"readout must be one of {self.READOUTS}, got {self.readout!r}")

    def output_shape(self, in_shape: Shape) -> Shape:
        return in_shape


from qsnn_deploy.ir.cuba import CubaLIF  # noqa: E402 - it builds on Node and the checks above

#: every node type, by its ``op`` name: the one table that serialisation dispatches on
NODE_TYPES: dict[str, type[Node]] = {cls.op: cls for cls in (Input, Conv2d, SumPool2d, Flatten, Linear, LIF, CubaLIF, Output)}
