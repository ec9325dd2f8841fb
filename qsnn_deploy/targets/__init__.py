"""Target cores as data: a profile file per core in this folder, loaded into :class:`TargetProfile`.

A profile states the core's number formats (weights, inputs, accumulators, membranes), its
neuron arithmetic (decay shift, rounding, overflow policy, comparison, reset) and its limits.
The rules that check a graph against a profile live in :mod:`qsnn_deploy.targets.rules`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from qsnn_deploy.errors import GraphError, TargetError
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.ir.nodes import COMPARES, OVERFLOWS, RESET_TIMINGS, RESETS, ROUNDINGS


@dataclass(frozen=True)
class TargetProfile:
    """A target core: number formats, neuron arithmetic and limits (see int4-core.json)."""

    name: str
    weight: IntType
    input: IntType
    accumulator: IntType
    state: IntType
    decay_shift: int
    rounding: str = "half_up"
    overflow: str = "saturate"
    compare: str = "gt"
    reset: str = "subtract"
    reset_timing: str = "delayed"
    limits: dict[str, int] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        for fname, allowed in (
            ("rounding", ROUNDINGS),
            ("overflow", OVERFLOWS),
            ("compare", COMPARES),
            ("reset", RESETS),
            ("reset_timing", RESET_TIMINGS),
        ):
            if getattr(self, fname) not in allowed:
                raise TargetError(f"target {self.name}: {fname} must be one of {allowed}, got {getattr(self, fname)!r}")
        if not self.state.signed or self.state.bits > 48:
            raise TargetError(f"target {self.name}: state must be a signed type of at most 48 bits")
        if type(self.decay_shift) is not int or not 0 <= self.decay_shift <= 30:
            raise TargetError(f"target {self.name}: decay_shift must be an integer 0..30, got {self.decay_shift!r}")
        if not isinstance(self.limits, dict) or not all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in self.limits.items()):
            raise TargetError(f"target {self.name}: limits must map names to non-negative integers, got {self.limits!r}"[:300])

    def with_changes(self, **changes: Any) -> TargetProfile:
        """A copy with some fields changed (e.g. a wider state for experiments)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.name if isinstance(v, IntType) else v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetProfile:
        if not isinstance(data, dict):
            raise TargetError("target profile must be a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "rationale":
                continue
            if key not in known:
                raise TargetError(f"target profile has unknown key {key!r}")
            values[key] = value
        try:
            for key in ("weight", "input", "accumulator", "state"):
                values[key] = IntType.parse(values[key])
            return cls(**values)
        except KeyError as exc:
            raise TargetError(f"target profile lacks {exc.args[0]!r}") from None
        except (GraphError, TypeError) as exc:
            raise TargetError(f"target profile is malformed: {exc}") from None


def available_targets() -> list[str]:
    return sorted(p.name[: -len(".json")] for p in resources.files(__package__).iterdir() if p.name.endswith(".json"))


def load_target(name_or_path: str | Path) -> TargetProfile:
    """A built-in target by name (``int4-core``) or a profile JSON file by path."""
    if isinstance(name_or_path, TargetProfile):
        return name_or_path
    text: str
    candidate = Path(name_or_path)
    if candidate.suffix == ".json" and candidate.is_file():
        try:
            text = candidate.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TargetError(f"target profile {name_or_path}: cannot read it as UTF-8 text ({exc})"[:300]) from None
    else:
        res = resources.files(__package__) / f"{name_or_path}.json"
        if not res.is_file():
            raise TargetError(f"unknown target {str(name_or_path)!r}; built-in targets: {', '.join(available_targets())}")
        text = res.read_text(encoding="utf-8")
    try:
        return TargetProfile.from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise TargetError(f"target profile {name_or_path}: invalid JSON ({exc})") from None
