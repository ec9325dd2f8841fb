"""The current-based LIF node (SynSense Xylo's neuron), an added case of the shared neuron arithmetic.

Its own module only to keep :mod:`qsnn_deploy.ir.nodes` (which re-exports it) under 400 lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from qsnn_deploy.errors import GraphError
from qsnn_deploy.ir.arithmetic import CUBA_FIXED, NeuronArithmetic
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.ir.nodes import Node, Shape, _require
from qsnn_deploy.ir.tensor import IntTensor


@dataclass(frozen=True, kw_only=True)
class CubaLIF(Node):
    r"""Current-based integer LIF neurons (SynSense Xylo's IAF neuron), one per entry of ``threshold``.

    A CubaLIF always follows a :class:`Linear` whose weight ``W`` (C, J) it reads: the synapse is
    part of the neuron because the chip saturates the synaptic current after every single
    event. With x[t] the presynaptic event counts (the Input's values, or the previous layer's
    spike counts), ``sat_I`` / ``sat_V`` saturation to ``synapse_state`` / ``state`` and
    ``wrap_I`` / ``wrap_V`` two's-complement narrowing to them, per neuron c::

        x'[t]   = x[t - input_delay]                 (0 for t < input_delay; per-hop latency)
        n_j     = min(x'_j[t], input_cap)             (input_cap 0: no cap)
        w_cj    = wrap_I(W[c, j] << weight_shift)     (e.g. 127 << 9 wraps in int16)
        I      <- sat_I(I + n_j * w_cj)  for j = 0, 1, ..., J-1 in order   (I starts at I[t-1])
        I[t]    = I - dec(I, dash_syn[c])
        dV      = sat_V(sat_V(wrap_V(-dec(V[t-1], dash_mem[c])) + I[t]) + bias[c])
        V'      = sat_V(V[t-1] + dV)
        S[t]    = clip(floor(V' / threshold[c]), 0, spike_cap)
        V[t]    = V' - S[t] * threshold[c]
        dec(x, d) = x >> d (arithmetic), or sign(x) where that is 0

    I[-1] = V[-1] = 0; the order over j matters once a partial sum saturates (docs/arithmetic.md
    section 8). S[t] is a spike count 0..spike_cap, the next layer's x. The arithmetic is fixed to
    the case Xylo computes (:attr:`FIXED`; ``decay_shift`` is the largest ``dash``).
    """

    op: ClassVar[str] = "CubaLIF"
    FIXED: ClassVar[dict[str, str]] = CUBA_FIXED
    threshold: IntTensor
    bias: IntTensor
    dash_syn: IntTensor
    dash_mem: IntTensor
    weight_shift: int = 0
    input_cap: int = 0
    input_delay: int = 0
    state: IntType
    synapse_state: IntType
    decay_shift: int = 15
    spike_cap: int = 1
    decay_rule: str = "shift"
    rounding: str = "floor"
    overflow: str = "saturate"
    compare: str = "ge"
    reset: str = "subtract"
    reset_timing: str = "immediate"

    def __post_init__(self) -> None:
        shape = self.threshold.shape if isinstance(self.threshold, IntTensor) else None
        _require(shape is not None and len(shape) == 1 and shape[0] > 0, "CubaLIF", "threshold must be a 1-D IntTensor (one per neuron)")
        for name in ("bias", "dash_syn", "dash_mem"):
            value = getattr(self, name)
            _require(
                isinstance(value, IntTensor) and value.shape == shape,
                "CubaLIF",
                f"{name} must be an IntTensor shaped like threshold {shape}",
            )
        _require(bool((self.threshold.values > 0).all()), "CubaLIF", "thresholds must be positive")
        for name, want in self.FIXED.items():
            _require(
                getattr(self, name) == want, "CubaLIF", f"{name} must be {want!r} (the one case implemented), got {getattr(self, name)!r}"
            )
        try:
            self.arithmetic  # noqa: B018 - its construction checks the arithmetic fields
        except GraphError as exc:
            raise GraphError(f"CubaLIF: {exc}") from None
        for name in ("dash_syn", "dash_mem"):
            ok = bool(((getattr(self, name).values >= 0) & (getattr(self, name).values <= self.decay_shift)).all())
            _require(ok, "CubaLIF", f"{name} must be 0..decay_shift ({self.decay_shift})")
        for name, top in (("weight_shift", 31), ("input_cap", 255), ("input_delay", 1)):
            value = getattr(self, name)
            _require(type(value) is int and 0 <= value <= top, "CubaLIF", f"{name} must be an integer 0..{top}, got {value!r}")
        fits = self.state.contains(self.threshold.values) and self.state.contains(self.bias.values)
        _require(fits, "CubaLIF", f"threshold and bias must fit the state type {self.state.name}")

    @property
    def arithmetic(self) -> NeuronArithmetic:
        """The node's neuron arithmetic (a current-based case of the shared type)."""
        return NeuronArithmetic(**{n: getattr(self, n) for n in NeuronArithmetic.field_names()})

    def output_shape(self, in_shape: Shape) -> Shape:
        _require(
            in_shape == self.threshold.shape,
            "CubaLIF",
            f"has {self.threshold.shape[0]} neurons but its input is {in_shape}",
        )
        return in_shape
