"""Run config files: a preset plus model and training field changes, for ``train --config FILE``.

``tune --report`` writes the best trial's parameters as one; a user may write one by hand.
JSON or TOML::

    preset = "fmnist-int4"          # optional; default the preset of the command line

    [model]                         # ModelConfig fields
    beta = 0.93
    threshold = 1.8

    [train]                         # TrainConfig fields
    lr = 0.0021

Flags given on the command line win over the file's values (:func:`merge_changes`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qsnn_deploy.atomic import write_text_atomic
from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.config import ModelConfig, TrainConfig, override

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_SECTIONS = {"model": ModelConfig, "train": TrainConfig}


@dataclass(frozen=True)
class RunConfig:
    """The changes a config file makes to a preset (``preset`` None: the command line's)."""

    preset: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    #: where the values came from (e.g. the study and trial); informative only
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "model": self.model, "train": self.train, "source": self.source}


def parse_run_config(doc: Any, where: str = "run config") -> RunConfig:
    """Validate a config document; every field must be one of the section's config class.

    Raises:
        QsnnError: naming the unknown section or field, or the value the config class rejects.
    """
    if not isinstance(doc, dict):
        raise QsnnError(f"{where}: expected a table, got {type(doc).__name__}")
    unknown = set(doc) - {"preset", "source", *_SECTIONS}
    if unknown:
        raise QsnnError(f"{where}: unknown keys {sorted(unknown)}; expected preset, model, train (and source)")
    preset = doc.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise QsnnError(f"{where}: preset must be a name, got {preset!r}")
    sections = {}
    for name, cls in _SECTIONS.items():
        values = doc.get(name) or {}
        if not isinstance(values, dict):
            raise QsnnError(f"{where}: [{name}] must be a table of {cls.__name__} fields")
        known = {f.name for f in dataclasses.fields(cls)}
        bad = set(values) - known
        if bad:
            raise QsnnError(f"{where}: [{name}] has unknown fields {sorted(bad)}; {cls.__name__} has {', '.join(sorted(known))}")
        try:  # the config classes validate their values; catch bad ones here, naming the file
            override(cls(), **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except (QsnnError, TypeError) as exc:
            raise QsnnError(f"{where}: [{name}] {exc}") from exc
        sections[name] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return RunConfig(preset, sections["model"], sections["train"], dict(doc.get("source") or {}))


def read_table_file(path: str | Path, what: str) -> Any:
    """The document in a ``.json`` or ``.toml`` file (``what`` names it in errors).

    Raises:
        QsnnError: another suffix, an unreadable file, or invalid JSON/TOML.
    """
    path = Path(path)
    if path.suffix not in (".json", ".toml"):
        raise QsnnError(f"{what} {path}: expected a .json or .toml file")
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise QsnnError(f"cannot read {what} {path}: {exc}") from exc
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise QsnnError(f"{what} {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc


def load_run_config(path: str | Path) -> RunConfig:
    """Read a ``.json`` or ``.toml`` run config file.

    Raises:
        QsnnError: missing or unparsable file, or an invalid field (named).
    """
    return parse_run_config(read_table_file(path, "run config"), str(path))


def write_run_config(path: str | Path, config: RunConfig) -> Path:
    """Write ``config`` as JSON, atomically."""
    return write_text_atomic(path, json.dumps(config.to_dict(), indent=2) + "\n")


def merge_changes(config: RunConfig, model_flags: dict[str, Any], train_flags: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model changes, train changes): the file's values, then every flag given (not None) on top."""
    model = {**config.model, **{k: v for k, v in model_flags.items() if v is not None}}
    train = {**config.train, **{k: v for k, v in train_flags.items() if v is not None}}
    return model, train


__all__ = ["RunConfig", "load_run_config", "merge_changes", "parse_run_config", "read_table_file", "write_run_config"]
