r"""The neuron arithmetic of a core: one frozen type that IR neuron nodes and target profiles share.

A target profile states the arithmetic its neurons compute; a frozen IR neuron node carries the
same fields (flat, as the graph JSON stores them) and exposes them as :attr:`LIF.arithmetic`. The
field choices and their checks live here only. What each field means is the equation of
:class:`~qsnn_deploy.ir.nodes.LIF` and docs/arithmetic.md:

- ``state``: the membrane's signed integer type (at most 48 bits, so the simulator's int64 is exact).
- ``decay_shift`` k: the decay is D(V) = (V * m + r) >> k with m = round(beta * 2^k).
- ``rounding``: r = 0 (``floor``) or 2^(k-1) (``half_up``; r = 0 when k = 0).
- ``overflow``: what happens when V leaves ``state``: ``saturate`` (clip), ``wrap`` (two's
  complement) or ``error`` (stop).
- ``compare``: spike when V > threshold (``gt``) or V >= threshold (``ge``).
- ``reset``: ``subtract`` the threshold or reset to ``zero`` after a spike.
- ``reset_timing``: the reset acts at the next step (``delayed``, snnTorch's ``Leaky``) or in the
  same step, after the spike test (``immediate``).

Current-based neurons (:class:`~qsnn_deploy.ir.nodes.CubaLIF`, SynSense Xylo) add three fields whose
defaults are the plain LIF's, so existing graphs and profiles keep their meaning:

- ``decay_rule``: ``multiply`` (D(V) above) or ``shift``: x <- x - dec(x, dash) with dec(x, dash) =
  x >> dash, or sign(x) where that is 0 (Xylo's bit-shift decay; ``decay_shift`` is then the
  largest allowed per-neuron ``dash``).
- ``synapse_state``: ``None`` (the synaptic sum enters the membrane directly) or the signed type
  of a saturating synaptic current (a second state per neuron).
- ``spike_cap``: at most this many spikes per neuron and step; above 1 the subtractive reset
  repeats, each spike subtracting the threshold once (Xylo's hidden neurons: 31).

A new neuron model or chip is a new case of these fields (a new choice, or a new optional field
with a default that keeps existing graphs unchanged), not a copy of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from qsnn_deploy.errors import GraphError
from qsnn_deploy.ir.dtypes import IntType

MAX_STATE_BITS = 48
MAX_DECAY_SHIFT = 30
MAX_SPIKE_CAP = 255
#: the fields the current-based neuron adds; their defaults are the plain LIF's arithmetic
CUBA_FIELDS = ("decay_rule", "synapse_state", "spike_cap")
#: the one current-based arithmetic implemented (Xylo's neuron): CubaLIF nodes must have these values
CUBA_FIXED = {
    "decay_rule": "shift",
    "rounding": "floor",
    "overflow": "saturate",
    "compare": "ge",
    "reset": "subtract",
    "reset_timing": "immediate",
}


@dataclass(frozen=True, kw_only=True)
class NeuronArithmetic:
    """How a core's integer neurons update (see the module docstring for every field)."""

    #: allowed values of each string field, in the order docs/arithmetic.md lists them
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "rounding": ("floor", "half_up"),
        "overflow": ("saturate", "wrap", "error"),
        "compare": ("gt", "ge"),
        "reset": ("subtract", "zero"),
        "reset_timing": ("delayed", "immediate"),
    }
    #: the decay rules (a separate table: a plain LIF node computes only ``multiply``)
    DECAY_RULES: ClassVar[tuple[str, ...]] = ("multiply", "shift")

    state: IntType
    decay_shift: int
    rounding: str = "half_up"
    overflow: str = "saturate"
    compare: str = "gt"
    reset: str = "subtract"
    reset_timing: str = "delayed"
    decay_rule: str = "multiply"
    synapse_state: IntType | None = None
    spike_cap: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.state, IntType) or not self.state.signed or self.state.bits > MAX_STATE_BITS:
            got = self.state.name if isinstance(self.state, IntType) else repr(self.state)
            raise GraphError(f"state must be a signed type of at most {MAX_STATE_BITS} bits, got {got}")
        if type(self.decay_shift) is not int or not 0 <= self.decay_shift <= MAX_DECAY_SHIFT:
            raise GraphError(f"decay_shift must be an integer 0..{MAX_DECAY_SHIFT}, got {self.decay_shift!r}")
        syn = self.synapse_state
        if syn is not None and (not isinstance(syn, IntType) or not syn.signed or syn.bits > MAX_STATE_BITS):
            got = syn.name if isinstance(syn, IntType) else repr(syn)
            raise GraphError(f"synapse_state must be null or a signed type of at most {MAX_STATE_BITS} bits, got {got}")
        if self.decay_rule not in self.DECAY_RULES:
            raise GraphError(f"decay_rule must be one of {self.DECAY_RULES}, got {self.decay_rule!r}")
        if type(self.spike_cap) is not int or not 1 <= self.spike_cap <= MAX_SPIKE_CAP:
            raise GraphError(f"spike_cap must be an integer 1..{MAX_SPIKE_CAP}, got {self.spike_cap!r}")
        for name, allowed in self.CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise GraphError(f"{name} must be one of {allowed}, got {value!r}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def fields(self) -> dict[str, Any]:
        """The fields by name, as an IR neuron node's keyword arguments take them.

        The current-based fields (``decay_rule``, ``synapse_state``, ``spike_cap``) appear only when they
        differ from their defaults, so a plain LIF arithmetic gives exactly the LIF node's fields.
        """
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in CUBA_FIELDS and value == f.default:
                continue
            out[f.name] = value
        return out

    def lif_fields(self) -> dict[str, Any]:
        """The fields a plain :class:`~qsnn_deploy.ir.nodes.LIF` node takes (the current-based ones dropped).

        For freezing a plain LIF model for a current-based core anyway (the core's rules then
        report it as not mappable).
        """
        return {k: v for k, v in self.fields().items() if k not in CUBA_FIELDS}

    @property
    def current_based(self) -> bool:
        """True for a neuron with a synaptic current state (:class:`~qsnn_deploy.ir.nodes.CubaLIF`)."""
        return self.synapse_state is not None

    def differences(self, other: NeuronArithmetic) -> list[tuple[str, Any, Any]]:
        """(field, this value, other's value) for every field where the two differ."""
        return [(n, getattr(self, n), getattr(other, n)) for n in self.field_names() if getattr(self, n) != getattr(other, n)]


__all__ = ["CUBA_FIELDS", "CUBA_FIXED", "MAX_DECAY_SHIFT", "MAX_SPIKE_CAP", "MAX_STATE_BITS", "NeuronArithmetic"]
