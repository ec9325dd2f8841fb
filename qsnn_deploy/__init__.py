"""qsnn-deploy: freeze quantised spiking networks into a typed integer graph, export, simulate.

The public Python API (docs/api.md) is this module's names; they stay put when the package's
internals move. Importing ``qsnn_deploy`` is light: each function imports its backing
module (torch, Brevitas, ONNX, ...) when it is first called.

    import qsnn_deploy as qd

    model = qd.load_model("model.pt")                 # float QAT model (eval mode)
    spikes = model.spikes(images, 100)                # (T, N, classes), reference per-step loop
    graph = qd.freeze(model, "int4-core")             # integer graph of a target
    qd.export(graph, "json", "model.json", target="int4-core", timesteps=100)
    result = qd.simulate(graph, images, 100, target="int4-core")
    report = qd.parity(model, graph, images, labels, target="int4-core")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: the shipped Fashion-MNIST int4 QAT checkpoint (examples/fmnist_int4/model.pt)
SHIPPED_MODEL = Path(__file__).parent / "assets" / "fmnist_int4.pt"
#: the demo's model: SHIPPED_MODEL with its readout refit by ``sg-cvx`` (squared hinge; docs/results.md),
#: a copy of runs/fmnist-sgcvx-sqhinge/best.pt
DEMO_MODEL = Path(__file__).parent / "assets" / "fmnist_int4_sgcvx.pt"


def load_model(path: str | os.PathLike[str], preset: str | None = None, trust: bool = False) -> Any:
    """Load a checkpoint as the float QAT model (a ``torch.nn.Module`` in eval mode).

    ``path``: a qsnn-deploy checkpoint, or a plain state_dict saved by the reference code
    (jeshraghian/QSNNs), which needs ``preset`` (e.g. ``"fmnist-int4"``) for its architecture;
    its beta, threshold and fc bias are read from the file. ``trust=True`` allows full
    unpickling (only for files you trust). Raises ``CheckpointError`` for a bad file.
    """
    from qsnn_deploy.training.checkpoint import build_model, load_checkpoint
    from qsnn_deploy.training.config import get_preset

    config = get_preset(preset).model if preset else None
    return build_model(load_checkpoint(path, trust=trust, config=config))


def load_target(target: Any = "int4-core") -> Any:
    """A target profile (``TargetProfile``) by built-in name or profile JSON path; a profile passes through."""
    from qsnn_deploy.targets import load_target as _load_target

    return _load_target(target)


def freeze(model: Any, target: Any = "int4-core", *, fraction_bits: int | None = None) -> Any:
    """Freeze a QAT model into the integer ``Graph`` of ``target`` (name or profile); ``TargetError`` if it cannot."""
    from qsnn_deploy.frontends.torch_qat import freeze as _freeze

    return _freeze(model, target, fraction_bits=fraction_bits)


def check_target(graph: Any, target: Any = "int4-core") -> Any:
    """Check ``graph`` against the target's rules; raises ``TargetError`` naming the failed rule."""
    from qsnn_deploy.targets.rules import check_target as _check_target

    return _check_target(graph, load_target(target))


def export(graph: Any, fmt: str, path: str | os.PathLike[str], **options: Any) -> Path:
    """Write ``graph`` in format ``fmt`` (``json``, ``qonnx``, ``onnx``, ``nir``, ...) atomically to ``path``.

    ``options`` are the format's (e.g. ``target=``, ``timesteps=``; docs/formats.md).
    """
    from qsnn_deploy.exporters import export as _export

    if "target" in options and options["target"] is not None:
        options["target"] = load_target(options["target"])
    return _export(graph, fmt, path, **options)


def export_formats() -> tuple[str, ...]:
    """The names ``export`` accepts."""
    from qsnn_deploy.exporters import FORMATS

    return tuple(FORMATS)


def read_graph(path: str | os.PathLike[str]) -> Any:
    """Read a graph JSON written by ``export(graph, "json", ...)`` back into a ``Graph``."""
    from qsnn_deploy.exporters.json_graph import read_graph_json

    return read_graph_json(path)[0]


def load_xylo_spec(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(chip, ``XyloSim.from_specification`` keyword arguments, golden arrays) of a ``--format xylo`` NPZ."""
    from qsnn_deploy.exporters.xylo_export import load_xylo_spec as _load

    return _load(path)


def simulate(graph: Any, x: Any, timesteps: int, **options: Any) -> Any:
    """Bit-accurate integer simulation of ``graph`` on uint8 images / event frames ``x``.

    Returns a ``SimResult`` (``predictions``, ``counts``, per-layer ``layers``; ``spikes`` with
    ``record=True``). ``options``: ``target=``, ``backend=``, ``record=`` (docs/api.md).
    """
    from qsnn_deploy.sim import simulate as _simulate

    if options.get("target") is not None:
        options["target"] = load_target(options["target"])
    return _simulate(graph, x, timesteps, **options)


def parity(model: Any, graph: Any, x: Any, y: Any, *, target: Any = "int4-core", **options: Any) -> Any:
    """Float model against its integer graph on (x, y): a ``ParityReport`` (accuracies, spike agreement).

    ``options``: ``batch_size=``, ``backend=``, ``progress=``.
    """
    from qsnn_deploy.app.parity import run_parity

    return run_parity(model, graph, x, y, target=load_target(target), **options)


def load_test_images(dataset: str = "fmnist", limit: int | None = None, data_dir: Any = None) -> tuple[Any, Any]:
    """(x uint8, y labels) of a data set's test split; Fashion-MNIST falls back to the shipped subset."""
    if dataset == "fmnist":
        from qsnn_deploy.data.loaders import load_fmnist_test_or_subset

        split, _ = load_fmnist_test_or_subset(data_dir=data_dir, limit=limit)
    else:
        from qsnn_deploy.data.loaders import load_split

        split = load_split(dataset, "test", data_dir=data_dir, limit=limit)
    return split.x, split.y


#: the public API: these names are stable (tests/test_reference_import.py checks them)
__all__ = [
    "DEMO_MODEL",
    "SHIPPED_MODEL",
    "check_target",
    "export",
    "export_formats",
    "freeze",
    "load_model",
    "load_xylo_spec",
    "load_target",
    "load_test_images",
    "parity",
    "read_graph",
    "simulate",
]
