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

    state: IntType
    decay_shift: int
    rounding: str = "half_up"
    overflow: str = "saturate"
    compare: str = "gt"
    reset: str = "subtract"
    reset_timing: str = "delayed"

    def __post_init__(self) -> None:
        if not isinstance(self.state, IntType) or not self.state.signed or self.state.bits > MAX_STATE_BITS:
            got = self.state.name if isinstance(self.state, IntType) else repr(self.state)
            raise GraphError(f"state must be a signed type of at most {MAX_STATE_BITS} bits, got {got}")
        if type(self.decay_shift) is not int or not 0 <= self.decay_shift <= MAX_DECAY_SHIFT:
            raise GraphError(f"decay_shift must be an integer 0..{MAX_DECAY_SHIFT}, got {self.decay_shift!r}")
        for name, allowed in self.CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise GraphError(f"{name} must be one of {allowed}, got {value!r}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def fields(self) -> dict[str, Any]:
        """The fields by name, as an IR neuron node's keyword arguments take them."""
        return {name: getattr(self, name) for name in self.field_names()}

    def differences(self, other: NeuronArithmetic) -> list[tuple[str, Any, Any]]:
        """(field, this value, other's value) for every field where the two differ."""
        return [(n, getattr(self, n), getattr(other, n)) for n in self.field_names() if getattr(self, n) != getattr(other, n)]


__all__ = ["MAX_DECAY_SHIFT", "MAX_STATE_BITS", "NeuronArithmetic"]
