"""The search space of ``qsnn-deploy tune``: which config fields a trial samples, and from where.

A space maps config field names (of :class:`~qsnn_deploy.training.config.ModelConfig` or
:class:`~qsnn_deploy.training.config.TrainConfig`) to a range or a list of choices. The default is
the paper's (:data:`SEARCH_SPACE`); a JSON or TOML file replaces it (:func:`load_space`), e.g.::

    [beta]
    low = 0.5
    high = 0.99

    [lr]
    low = 1e-4
    high = 1e-2
    log = true

    [schedule]
    choices = ["cosine", "step"]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.config import ModelConfig, TrainConfig
from qsnn_deploy.training.run_config import read_table_file

#: fields a search may not sample: the study fixes them for every trial (seed = trial number)
FIXED_BY_STUDY = ("epochs", "seed", "dataset")


@dataclass(frozen=True)
class Dimension:
    """One sampled field: a float or int range (``log`` scale optional), or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: Any) -> Any:
        """The value ``trial`` (an ``optuna.Trial``) samples for this field."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if _field_type(self.name) is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def to_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log}


#: the paper's wide search space (Table I footnote); the bounds are ours (docs/tune.md)
SEARCH_SPACE: tuple[Dimension, ...] = (
    Dimension("beta", 0.3, 0.999),
    Dimension("threshold", 0.3, 3.0),
    Dimension("slope", 1.0, 15.0),
    Dimension("lr", 1e-4, 1e-2, log=True),
    Dimension("dropout", 0.0, 0.3),
)

_MODEL_FIELDS = {f.name: f for f in dataclasses.fields(ModelConfig)}
_TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _field_type(name: str) -> type:
    """float, int, bool or str: the type of a config field (annotations are strings here)."""
    field = _MODEL_FIELDS.get(name) or _TRAIN_FIELDS[name]
    return {"float": float, "int": int, "bool": bool, "str": str}.get(str(field.type), object)


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model field changes, train field changes) of a trial's sampled parameters."""
    return {k: v for k, v in params.items() if k in _MODEL_FIELDS}, {k: v for k, v in params.items() if k in _TRAIN_FIELDS}


def parse_space(doc: Any, source: str = "search space") -> tuple[Dimension, ...]:
    """Validate a space given as ``{field: {"low", "high"[, "log"]} | {"choices": [...]}}``.

    Raises:
        QsnnError: naming the field and what is wrong with it.
    """
    if not isinstance(doc, dict) or not doc:
        raise QsnnError(f"{source}: expected a non-empty table of fields, got {type(doc).__name__}")
    return tuple(_parse_dimension(name, spec, source) for name, spec in doc.items())


def _parse_dimension(name: str, spec: Any, source: str) -> Dimension:
    where = f"{source}: field {name!r}"
    if name in FIXED_BY_STUDY:
        raise QsnnError(f"{where} is fixed by the study (epochs = --epochs-per-trial, seed = trial number, dataset = --data)")
    if name not in _MODEL_FIELDS and name not in _TRAIN_FIELDS:
        raise QsnnError(f"{where} is not a model or training config field; known: {', '.join(sorted({*_MODEL_FIELDS, *_TRAIN_FIELDS}))}")
    if not isinstance(spec, dict):
        raise QsnnError(f"{where}: expected a table with low/high[/log] or choices, got {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "choices"}
    if unknown:
        raise QsnnError(f"{where}: unknown keys {sorted(unknown)} (use low, high, log or choices)")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise QsnnError(f"{where}: choices must be a non-empty list and come alone (no low/high)")
        if any(not isinstance(c, (str, int, float, bool)) for c in choices):
            raise QsnnError(f"{where}: choices must be strings, numbers or booleans")
        return Dimension(name, choices=tuple(choices))
    return _parse_range(name, spec, where)


def _parse_range(name: str, spec: dict[str, Any], where: str) -> Dimension:
    kind = _field_type(name)
    if kind not in (int, float):
        raise QsnnError(f"{where} is a {kind.__name__} field: give choices, not a range")
    if "low" not in spec or "high" not in spec:
        raise QsnnError(f"{where}: a range needs both low and high")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    for key, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise QsnnError(f"{where}: {key} must be a finite number, got {value!r}")
        if kind is int and value != int(value):
            raise QsnnError(f"{where} is an integer field: {key} must be a whole number, got {value!r}")
    if not isinstance(log, bool):
        raise QsnnError(f"{where}: log must be true or false, got {log!r}")
    if not low < high:
        raise QsnnError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise QsnnError(f"{where}: a log-scale range needs low > 0, got {low}")
    return Dimension(name, float(low), float(high), log)


def load_space(path: str | Path) -> tuple[Dimension, ...]:
    """Read and validate a search space from a ``.json`` or ``.toml`` file (it replaces the default).

    Raises:
        QsnnError: the file is missing, not JSON/TOML, or a field is invalid (named).
    """
    return parse_space(read_table_file(path, "search space"), str(path))


__all__ = ["Dimension", "FIXED_BY_STUDY", "SEARCH_SPACE", "load_space", "parse_space", "split_params"]
