"""Library entry points behind the CLI: load what the user points at, get data for it.

``MODEL`` arguments are a checkpoint (frozen here for the target) or an exported graph
JSON (already frozen; it carries its target). Which one a file is comes from its content
(:func:`sniff_model_file`), not its name; ONNX, QONNX and NIR files are recognised and refused
with a message saying so, since they cannot be read back into the IR losslessly (see docs/cli.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsnn_deploy.errors import CheckpointError, QsnnError
from qsnn_deploy.targets import TargetProfile, load_target


@dataclass
class Deployable:
    """A frozen graph (None if loaded unfrozen), the float model it came from (None for a graph JSON), and its target."""

    graph: Any
    target: TargetProfile
    model: Any | None
    timesteps: int
    dataset: str | None
    source: Path
    #: an ``sg-cvx`` refit (``ConvReadoutModel``): ``model`` is None, and parity's float model is built from this
    refit: Any | None = None


#: what MODEL accepts, for the messages that refuse other files
MODEL_ACCEPTS = "MODEL must be a qsnn-deploy checkpoint (.pt) or a graph JSON written by `qsnn-deploy export --format json`"
#: leading bytes of the formats a MODEL file may hold, as their specifications define them
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"  # pickle protocol >= 2 opcode; torch's legacy (non-zip) format
_ONNX_FIRST_TAG = b"\x08"  # ModelProto field 1 (ir_version, varint), written first by protobuf
_QONNX_DOMAINS = (b"qonnx.custom_op", b"finn.custom_op")
_SNIFF_BYTES = 64 << 20  # QONNX domains sit in node records, anywhere in the file


def sniff_model_file(path: Path) -> str:
    """What ``path`` holds, from its content: ``checkpoint``, ``json``, ``onnx``, ``qonnx``, ``nir`` or ``unknown``."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            if head.startswith(_ONNX_FIRST_TAG):
                body = head + fh.read(_SNIFF_BYTES)
                return "qonnx" if any(d in body for d in _QONNX_DOMAINS) else "onnx"
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the file ({exc})") from None
    if head.startswith(_HDF5_MAGIC):
        return "nir"
    if head.startswith((_ZIP_MAGIC, _PICKLE_PROTO)):
        return "checkpoint"
    if head.lstrip(b" \t\r\n\xef\xbb\xbf").startswith(b"{"):
        return "json"
    return "unknown"


_FOREIGN = {
    "onnx": "an ONNX model (a qsnn-deploy export or another tool's)",
    "qonnx": "a QONNX model (ONNX with qonnx Quant/MultiThreshold nodes)",
    "nir": "an HDF5 file (a NIR graph)",
}


def load_deployable(
    path: str | Path,
    *,
    target: str | TargetProfile | None = None,
    trust: bool = False,
    preset: str | None = None,
    fraction_bits: int | None = None,
    frozen: bool = True,
    check: bool = True,
) -> Deployable:
    """Load a checkpoint (and freeze it for ``target``) or a graph JSON file.

    ``target`` None means the graph JSON's own target, or int4-core for a checkpoint; a target
    given for a graph JSON is checked against the graph with the target's own rules
    (:class:`TargetError` if it does not fit), unless ``check`` is False (the caller checks,
    e.g. to honour ``--ignore-limits``).
    ``frozen=False`` leaves a checkpoint unfrozen (``graph`` None), for callers that freeze it
    for several targets themselves (``sweep``) and must not fail on one they will not use.
    """
    path = Path(path)
    kind = sniff_model_file(path)
    if kind in _FOREIGN:
        raise CheckpointError(f"{path} is {_FOREIGN[kind]}, which cannot be read back into the integer graph; {MODEL_ACCEPTS}")
    if kind == "json" or (kind == "unknown" and path.suffix == ".json"):
        from qsnn_deploy.exporters.json_graph import read_graph_json
        from qsnn_deploy.targets.checks import check_graph

        graph, embedded, meta = read_graph_json(path)
        tgt = load_target(target) if target is not None else embedded
        if tgt is None:
            raise QsnnError(f"{path}: the graph embeds no target; pass --target")
        if target is not None and check:
            check_graph(graph, tgt)
        timesteps = graph.timesteps
        if not timesteps:
            raise QsnnError(f"{path}: the graph states no number of time steps; pass --timesteps")
        dataset = (graph.metadata.get("model_config") or {}).get("dataset")
        return Deployable(graph, tgt, None, int(timesteps), dataset, path)
    from qsnn_deploy.training.convex.checkpoint import is_convex_checkpoint

    if is_convex_checkpoint(path):
        return _load_convex(path, target)
    from qsnn_deploy.training.convex.conv_checkpoint import is_conv_readout_checkpoint

    if is_conv_readout_checkpoint(path):
        return _load_conv_readout(path, target)
    from qsnn_deploy.frontends.torch_qat import freeze
    from qsnn_deploy.training.checkpoint import build_model, load_checkpoint
    from qsnn_deploy.training.config import get_preset

    config = get_preset(preset).model if preset else None
    ckpt = load_checkpoint(path, trust=trust, config=config)
    model = build_model(ckpt)
    tgt = load_target(target or "int4-core")
    graph = freeze(model, tgt, fraction_bits=fraction_bits) if frozen else None
    dataset = ckpt.train_config.dataset if ckpt.train_config else None
    return Deployable(graph, tgt, model, ckpt.model_config.timesteps, dataset, path)


def _load_convex(path: Path, target: str | TargetProfile | None) -> Deployable:
    """A convex-trained witness-stack checkpoint, frozen (pruned) for ``target``.

    Its neurons compare with >= and reset in the same step, which int4-core (the CLI's default
    target) does not do: the default becomes seq-core, the core those neurons are built for.
    """
    from qsnn_deploy.frontends.convex_stack import freeze_stack
    from qsnn_deploy.training.convex.checkpoint import load_stack

    model = load_stack(path)
    tgt = load_target("seq-core" if target in (None, "int4-core") else target)
    return Deployable(freeze_stack(model, tgt), tgt, None, model.config.timesteps, model.dataset, path)


def _load_conv_readout(path: Path, target: str | TargetProfile | None) -> Deployable:
    """A conv QSNN whose readout ``sg-cvx`` refit (:mod:`qsnn_deploy.training.convex.conv_checkpoint`), frozen for its target."""
    from qsnn_deploy.training.convex.conv_checkpoint import freeze_conv_readout, load_conv_readout

    model = load_conv_readout(path)
    graph = freeze_conv_readout(model, target)
    # no QAT model to re-freeze (model None); float_model builds parity's float counterpart from the refit
    return Deployable(graph, load_target(model.target), None, model.timesteps, model.dataset, path, refit=model)


def float_model(dep: Deployable) -> Any:
    """The float model ``parity`` compares ``dep``'s integer graph with.

    For a checkpoint that is the QAT model itself; for an ``sg-cvx`` refit it is
    :class:`~qsnn_deploy.training.convex.conv_checkpoint.FloatConvReadout` (the base model's float
    conv layers under the refit integer readout).

    Raises:
        QsnnError: a graph JSON or a convex witness-stack model, which carry no float model.
    """
    if dep.model is not None:
        return dep.model
    if dep.refit is not None:
        from qsnn_deploy.training.convex.conv_checkpoint import FloatConvReadout

        return FloatConvReadout(dep.refit, timesteps=dep.timesteps)
    raise QsnnError("parity needs the float model: give a checkpoint, not a graph JSON")


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
