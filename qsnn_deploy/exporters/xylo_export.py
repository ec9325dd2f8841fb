"""Xylo export: the keyword arguments of rockpool's ``XyloSim.from_specification``, as an NPZ.

Mapping (docs/targets.md). A chain Input -> (Linear -> CubaLIF)+ -> Output with m CubaLIF
layers becomes Xylo's three populations: CubaLIF 1..m-1 are consecutive blocks of the hidden
population (layer k at indices off_k .. off_k + N_k - 1), CubaLIF m is the output population.

- ``weights_in`` (N_in, N_hid, 1): Linear 1's weights into block 1, zero elsewhere.
- ``weights_rec`` (N_hid, N_hid, 1): Linear k's weights (k = 2..m-1) as the block from hidden
  layer k-1 to hidden layer k; all other entries zero, so the recurrent population is a
  feed-forward chain. Each block costs one step, as CubaLIF's ``input_delay`` = 1 states.
- ``weights_out`` (N_hid, N_out): Linear m's weights from the last block, zero elsewhere.
- ``dash_syn``, ``dash_mem``, ``threshold``, ``bias`` (N_hid) and their ``*_out`` (N_out): the
  layers' CubaLIF fields; ``weight_shift_in`` / ``_rec`` / ``_out``: CubaLIF 1's, the (shared)
  shift of CubaLIF 2..m-1 (0 without recurrent weights) and CubaLIF m's.
- ``chip``: the target's chip name (``syns63300`` for xylo-imu, ``syns61201`` for xylo-audio2).

One synapse per neuron (the last axis of ``weights_in`` / ``weights_rec`` has size 1): Xylo
IMU has one, Audio 2's second stays unused. With ``golden`` the file also holds
``golden_input`` (N, T, N_in) integer events and ``golden_output`` (N, T, N_out) output spikes
per step from our simulator (from the CLI also ``golden_indices`` and ``golden_dataset``, where the
samples came from). Every other key is a keyword argument of ``from_specification``
(:func:`load_xylo_spec` returns them ready to pass); ``aliases``, ``dt``, ``dash_syn_2``,
``verify_config`` and ``output_mode`` are left to their defaults.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from qsnn_deploy.atomic import write_bytes_atomic
from qsnn_deploy.errors import ExportError, GraphError
from qsnn_deploy.exporters.golden import GoldenSource
from qsnn_deploy.ir import Graph
from qsnn_deploy.sim import cuba_chain
from qsnn_deploy.targets import TargetProfile, load_target

#: the keys that are not ``from_specification`` arguments
EXTRA_KEYS = ("chip", "golden_input", "golden_output", "golden_indices", "golden_dataset")


def to_xylo_spec(graph: Graph) -> dict[str, np.ndarray]:
    """The ``from_specification`` keyword arguments of a CubaLIF chain (module docstring)."""
    try:
        layers = cuba_chain.cuba_layers(graph)
    except GraphError as exc:
        raise ExportError(f"xylo export: {exc}") from None
    if len(layers) < 2:
        raise ExportError("xylo export: needs at least one hidden and one output CubaLIF layer")
    hidden, (_, out_linear, out_node) = layers[:-1], layers[-1]
    sizes = [len(node.threshold.values) for _, _, node in hidden]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    n_hid, n_in = int(offsets[-1]), graph.input.shape[0]
    w_in = np.zeros((n_in, n_hid, 1), np.int64)
    w_in[:, : sizes[0], 0] = hidden[0][1].weight.values.T
    w_rec = np.zeros((n_hid, n_hid, 1), np.int64)
    for k in range(1, len(hidden)):
        w_rec[offsets[k - 1] : offsets[k], offsets[k] : offsets[k + 1], 0] = hidden[k][1].weight.values.T
    w_out = np.zeros((n_hid, len(out_node.threshold.values)), np.int64)
    w_out[offsets[-2] :, :] = out_linear.weight.values.T
    shifts = {node.weight_shift for _, _, node in hidden[1:]}
    if len(shifts) > 1:
        raise ExportError(f"xylo export: hidden layers 2.. have weight shifts {sorted(shifts)}; the chip has one recurrent shift")

    def joined(field: str) -> np.ndarray:
        return np.concatenate([getattr(node, field).values for _, _, node in hidden]).astype(np.int64)

    return {
        "weights_in": w_in.astype(np.int8),
        "weights_out": w_out.astype(np.int8),
        "weights_rec": w_rec.astype(np.int8),
        "dash_mem": joined("dash_mem"),
        "dash_mem_out": out_node.dash_mem.values.astype(np.int64),
        "dash_syn": joined("dash_syn"),
        "dash_syn_out": out_node.dash_syn.values.astype(np.int64),
        "threshold": joined("threshold"),
        "threshold_out": out_node.threshold.values.astype(np.int64),
        "bias": joined("bias"),
        "bias_out": out_node.bias.values.astype(np.int64),
        "weight_shift_in": np.int64(hidden[0][2].weight_shift),
        "weight_shift_rec": np.int64(shifts.pop() if shifts else 0),
        "weight_shift_out": np.int64(out_node.weight_shift),
    }


def golden_vectors(graph: Graph, inputs: np.ndarray, timesteps: int) -> tuple[np.ndarray, np.ndarray]:
    """(golden_input (N, T, N_in), golden_output (N, T, N_out)) from our simulator, for ``inputs`` (N, T, N_in)."""
    x = np.asarray(inputs)
    if x.ndim != 3 or x.shape[1] < timesteps or x.shape[2] != graph.input.shape[0]:
        raise ExportError(f"xylo golden inputs must be (N, T >= {timesteps}, {graph.input.shape[0]}) events, got {x.shape}")
    x = x[:, :timesteps].astype(np.int64)
    run = cuba_chain.run(graph, x, timesteps, record=True)
    last = list(run.spikes)[-1]
    return x.astype(np.uint8), run.spikes[last].transpose(1, 0, 2).astype(np.uint8)


def export_xylo(
    graph: Graph,
    path: str | os.PathLike[str],
    *,
    target: str | TargetProfile = "xylo-imu",
    timesteps: int | None = None,
    golden: np.ndarray | None = None,
    golden_source: GoldenSource | None = None,
) -> Path:
    """Write :func:`to_xylo_spec` (plus ``chip`` and golden vectors) to ``path`` as an NPZ, atomically.

    The target's rules run in the caller (``export --ignore-limits`` skips them); this writer
    only refuses graphs it cannot map. Raises :class:`ExportError` for those.
    """
    profile = load_target(target)
    if not profile.chip:
        raise ExportError(f"xylo export: target {profile.name!r} is not a Xylo chip (choose xylo-imu or xylo-audio2)")
    arrays: dict[str, Any] = {**to_xylo_spec(graph), "chip": np.array(profile.chip)}
    if golden is not None:
        if timesteps is None:
            raise ExportError("xylo export: golden vectors need the number of time steps")
        arrays["golden_input"], arrays["golden_output"] = golden_vectors(graph, golden, timesteps)
        if golden_source is not None:  # where the samples came from, so a testbench can find them
            arrays["golden_indices"] = np.asarray(golden_source.indices, np.int64)
            arrays["golden_dataset"] = np.array(f"{golden_source.dataset}/{golden_source.split}")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return write_bytes_atomic(path, buffer.getvalue())


def load_xylo_spec(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """(chip, ``from_specification`` keyword arguments, golden arrays) of an exported NPZ.

    Scalars come back as Python ints so that ``XyloSim.from_specification(**kwargs)`` takes them.
    """
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    chip = str(arrays.pop("chip"))
    golden = {k: arrays.pop(k) for k in EXTRA_KEYS[1:] if k in arrays}
    kwargs = {k: (int(v) if v.ndim == 0 else v) for k, v in arrays.items()}
    return chip, kwargs, golden


__all__ = ["export_xylo", "golden_vectors", "load_xylo_spec", "to_xylo_spec"]
