"""Integer tensors of the IR: values plus the :class:`~qsnn_deploy.ir.dtypes.IntType` they fit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from qsnn_deploy.errors import GraphError
from qsnn_deploy.ir.dtypes import IntType

#: largest tensor a graph may declare (guards readers of untrusted JSON against huge allocations)
MAX_ELEMENTS = 50_000_000


@dataclass(frozen=True, eq=False)
class IntTensor:
    """An immutable int64 array whose every value fits ``dtype``."""

    values: np.ndarray
    dtype: IntType

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, IntType):
            raise GraphError(f"tensor dtype must be an IntType, got {type(self.dtype).__name__}")
        arr = np.asarray(self.values)
        if arr.dtype.kind not in "iub":
            raise GraphError(f"integer tensor holds non-integer values (dtype {arr.dtype})")
        if arr.size > MAX_ELEMENTS:
            raise GraphError(f"tensor of {arr.size} elements exceeds the limit of {MAX_ELEMENTS}")
        if arr.size and arr.dtype.kind == "u" and int(arr.max()) > np.iinfo(np.int64).max:
            raise GraphError(f"tensor values up to {int(arr.max())} exceed the int64 range the IR stores")
        if not self.dtype.contains(arr):
            raise GraphError(
                f"tensor values [{int(arr.min())}, {int(arr.max())}] exceed {self.dtype.name} [{self.dtype.min}, {self.dtype.max}]"
            )
        frozen = np.array(arr, dtype=np.int64, copy=True)
        frozen.flags.writeable = False
        object.__setattr__(self, "values", frozen)

    @classmethod
    def of(cls, values: Any, dtype: IntType | str) -> IntTensor:
        return cls(np.asarray(values), IntType.parse(dtype) if isinstance(dtype, str) else dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.values.shape)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntTensor):
            return NotImplemented
        return self.dtype == other.dtype and self.shape == other.shape and bool(np.array_equal(self.values, other.values))

    def __hash__(self) -> int:
        return hash((self.dtype, self.shape, self.values.tobytes()))

    def __repr__(self) -> str:
        return f"IntTensor({self.dtype.name}, shape={self.shape})"

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype.name, "shape": list(self.shape), "values": self.values.ravel().tolist()}

    @classmethod
    def from_dict(cls, data: Any) -> IntTensor:
        if not isinstance(data, dict) or set(data) != {"dtype", "shape", "values"}:
            raise GraphError("integer tensor must be an object with exactly dtype, shape and values")
        shape, values = data["shape"], data["values"]
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise GraphError(f"tensor shape must be a list of non-negative integers, got {shape!r}"[:200])
        count = 1
        for s in shape:
            count *= s
            if count > MAX_ELEMENTS:
                raise GraphError(f"tensor shape {shape} exceeds the limit of {MAX_ELEMENTS} elements"[:200])
        if not isinstance(values, list) or len(values) != count:
            raise GraphError(
                f"tensor declares shape {shape} but holds {len(values) if isinstance(values, list) else 'no list of'} values"[:200]
            )
        if not all(type(v) is int for v in values):
            raise GraphError("tensor values must all be integers")
        dtype = IntType.parse(data["dtype"])
        if values and (min(values) < dtype.min or max(values) > dtype.max):
            raise GraphError(f"tensor values exceed {dtype.name} [{dtype.min}, {dtype.max}]")
        if values and max(values) > np.iinfo(np.int64).max:  # UINT64 values the int64 storage cannot hold
            raise GraphError(f"tensor values up to {max(values)} exceed the int64 range the IR stores")
        return cls(np.array(values, dtype=np.int64).reshape(shape), dtype)
