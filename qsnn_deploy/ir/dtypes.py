"""Integer data types carried by every integer tensor of the IR (after qonnx's ``IntType``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from qsnn_deploy.errors import GraphError

_NAME = re.compile(r"^(U?)INT(\d+)(_NARROW)?$")


@dataclass(frozen=True)
class IntType:
    """A two's-complement (``signed``) or unsigned integer of ``bits`` bits.

    ``narrow`` drops the most negative code of a signed type, as Brevitas' narrow-range
    weight quantisers do (4 bits: -7..7 instead of -8..7).
    """

    bits: int
    signed: bool = True
    narrow: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or not 1 <= self.bits <= 64:
            raise GraphError(f"integer type needs 1..64 bits, got {self.bits!r}")
        if not isinstance(self.signed, bool) or not isinstance(self.narrow, bool):
            raise GraphError("integer type: signed and narrow must be booleans")
        if self.narrow and not self.signed:
            raise GraphError("integer type: only signed types can be narrow")
        if self.signed and self.bits < 2 and self.narrow:
            raise GraphError("integer type: a narrow signed type needs >= 2 bits")

    @property
    def min(self) -> int:
        if not self.signed:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def max(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def name(self) -> str:
        """Canonical name: ``INT4``, ``UINT8``, ``INT4_NARROW``."""
        return f"{'' if self.signed else 'U'}INT{self.bits}{'_NARROW' if self.narrow else ''}"

    @classmethod
    def parse(cls, name: str) -> IntType:
        """Inverse of :attr:`name`."""
        m = _NAME.match(name) if isinstance(name, str) else None
        if not m:
            raise GraphError(f"unknown integer type {name!r} (expected e.g. INT8, UINT4, INT4_NARROW)")
        return cls(int(m[2]), signed=not m[1], narrow=bool(m[3]))

    def contains(self, values: np.ndarray | int) -> bool:
        """True if every value lies in [min, max]."""
        arr = np.asarray(values)
        if arr.size == 0:
            return True
        return bool(arr.min() >= self.min and arr.max() <= self.max)

    def saturate(self, values: np.ndarray) -> np.ndarray:
        return np.clip(values, self.min, self.max)

    def wrap(self, values: np.ndarray) -> np.ndarray:
        """Two's-complement wrap-around of int64 ``values`` into this type."""
        span = 1 << self.bits
        v = (np.asarray(values, dtype=np.int64) - self.min) % span
        return v + self.min

    def __str__(self) -> str:
        return self.name


__all__ = ["IntType"]
