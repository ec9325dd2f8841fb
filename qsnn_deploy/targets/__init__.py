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
from qsnn_deploy.ir.arithmetic import NeuronArithmetic
from qsnn_deploy.ir.dtypes import IntType

#: the rule lists a profile can name (``rule_set``); the lists themselves are in targets.checks
RULE_SETS = ("core", "xylo")


@dataclass(frozen=True)
class TargetProfile:
    """A target core: number formats, neuron arithmetic and limits (see int4-core.json).

    The profile file is flat: the :class:`~qsnn_deploy.ir.arithmetic.NeuronArithmetic` fields
    (``state``, ``decay_shift``, ``rounding``, ``overflow``, ``compare``, ``reset``,
    ``reset_timing``) sit beside the number formats; they are read as attributes of the profile
    too (``target.state``).
    """

    name: str
    weight: IntType
    input: IntType
    accumulator: IntType
    arithmetic: NeuronArithmetic
    limits: dict[str, int] = field(default_factory=dict)
    description: str = ""
    #: which rule list checks graphs against this core: "core" (targets.rules.RULES) or "xylo"
    rule_set: str = "core"
    #: the vendor's chip name, for exports that name it (Xylo IMU: "syns63300"); "" for our own cores
    chip: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.arithmetic, NeuronArithmetic):
            raise TargetError(f"target {self.name}: arithmetic must be a NeuronArithmetic")
        if self.rule_set not in RULE_SETS:
            raise TargetError(f"target {self.name}: rule_set must be one of {RULE_SETS}, got {self.rule_set!r}")
        if not isinstance(self.limits, dict) or not all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in self.limits.items()):
            raise TargetError(f"target {self.name}: limits must map names to non-negative integers, got {self.limits!r}"[:300])

    def __getattr__(self, name: str) -> Any:
        # only called for names that are not fields: the arithmetic's fields read through
        if name in NeuronArithmetic.field_names():
            return getattr(self.__dict__["arithmetic"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def with_changes(self, **changes: Any) -> TargetProfile:
        """A copy with some fields changed, arithmetic fields included (e.g. a wider state for experiments)."""
        arith = {k: changes.pop(k) for k in list(changes) if k in NeuronArithmetic.field_names()}
        try:
            arithmetic = dataclasses.replace(self.arithmetic, **arith)
        except GraphError as exc:
            raise TargetError(f"target {changes.get('name', self.name)}: {exc}") from None
        return dataclasses.replace(self, arithmetic=arithmetic, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The flat profile document (the JSON file's keys)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("rule_set", "chip") and v == f.default:
                continue  # absent from the profiles of our own cores, whose documents stay as they were
            if isinstance(v, NeuronArithmetic):
                out.update({k: a.name if isinstance(a, IntType) else a for k, a in v.fields().items()})
            else:
                out[f.name] = v.name if isinstance(v, IntType) else v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetProfile:
        if not isinstance(data, dict):
            raise TargetError("target profile must be a JSON object")
        arith_keys = set(NeuronArithmetic.field_names())
        known = {f.name for f in dataclasses.fields(cls)} - {"arithmetic"}
        unknown = sorted(set(data) - known - arith_keys - {"rationale"})
        if unknown:
            raise TargetError(f"target profile has unknown key {unknown[0]!r}")
        values = {k: v for k, v in data.items() if k in known}
        arith = {k: v for k, v in data.items() if k in arith_keys}
        try:
            for key in ("weight", "input", "accumulator"):
                values[key] = IntType.parse(values[key])
            arith["state"] = IntType.parse(arith["state"])
            if arith.get("synapse_state") is not None:
                arith["synapse_state"] = IntType.parse(arith["synapse_state"])
        except KeyError as exc:
            raise TargetError(f"target profile lacks {exc.args[0]!r}") from None
        except GraphError as exc:
            raise TargetError(f"target profile is malformed: {exc}") from None
        try:
            arithmetic = NeuronArithmetic(**arith)
        except GraphError as exc:
            raise TargetError(f"target {data.get('name', '?')}: {exc}") from None
        except TypeError as exc:
            raise TargetError(f"target profile is malformed: {exc}") from None
        try:
            return cls(**values, arithmetic=arithmetic)
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
