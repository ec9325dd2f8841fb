"""Library entry points behind the CLI: load what the user points at, get data for it.

``MODEL`` arguments are a checkpoint (frozen here for the target) or an exported graph
JSON (already frozen; it carries its target).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsnn_deploy.errors import QsnnError
from qsnn_deploy.targets import TargetProfile, load_target


@dataclass
class Deployable:
    """A frozen graph, the float model it came from (None for a graph JSON), and its target."""

    graph: Any
    target: TargetProfile
    model: Any | None
    timesteps: int
    dataset: str | None
    source: Path


def load_deployable(
    path: str | Path,
    *,
    target: str | TargetProfile | None = "int4-core",
    trust: bool = False,
    preset: str | None = None,
    fraction_bits: int | None = None,
) -> Deployable:
    """Load a checkpoint (and freeze it for ``target``) or a graph JSON file."""
    path = Path(path)
    if path.suffix == ".json":
        from qsnn_deploy.exporters.json_graph import read_graph_json

        graph, embedded, meta = read_graph_json(path)
        tgt = load_target(target) if target is not None else embedded
        if tgt is None:
            raise QsnnError(f"{path}: the graph embeds no target; pass --target")
        timesteps = meta.get("timesteps") or graph.metadata.get("timesteps")
        if not timesteps:
            raise QsnnError(f"{path}: the graph states no number of time steps; pass --timesteps")
        dataset = (graph.metadata.get("model_config") or {}).get("dataset")
        return Deployable(graph, tgt, None, int(timesteps), dataset, path)
    from qsnn_deploy.frontends.torch_qat import freeze
    from qsnn_deploy.training.checkpoint import build_model, load_checkpoint
    from qsnn_deploy.training.config import get_preset

    config = get_preset(preset).model if preset else None
    ckpt = load_checkpoint(path, trust=trust, config=config)
    model = build_model(ckpt)
    tgt = load_target(target or "int4-core")
    graph = freeze(model, tgt, fraction_bits=fraction_bits)
    dataset = ckpt.train_config.dataset if ckpt.train_config else None
    return Deployable(graph, tgt, model, ckpt.model_config.timesteps, dataset, path)


def with_timesteps(dep: Deployable, timesteps: int | None) -> Deployable:
    """Override the number of steps (the float model's too)."""
    if timesteps is None:
        return dep
    if timesteps < 1:
        raise QsnnError(f"--timesteps must be >= 1, got {timesteps}")
    if dep.model is not None:
        dep.model.config = dataclasses.replace(dep.model.config, timesteps=timesteps)
    return dataclasses.replace(dep, timesteps=timesteps)


def eval_data_name(dep: Deployable, data: str | None) -> str:
    """The data set a command evaluates on: the one asked for, else the model's, else Fashion-MNIST."""
    return data or dep.dataset or "fmnist"


def load_eval_data(dep: Deployable, data: str | None, data_dir: str | Path | None, limit: int | None, seed: int = 0):
    """The test split of ``data`` (default: the model's data set, else Fashion-MNIST)."""
    from qsnn_deploy.data.loaders import load_split

    name = eval_data_name(dep, data)
    if limit is not None and limit < 1:
        raise QsnnError(f"--limit must be >= 1, got {limit}")
    return load_split(name, "test", data_dir=data_dir, timesteps=dep.timesteps, limit=limit, seed=seed)
