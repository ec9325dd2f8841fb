r"""NIR export (HDF5 through ``nir.write``): float parameters for NIR readers, integer contract in metadata.

NIR's LIF is continuous-time, :math:`\tau \dot v = (v_{leak} - v) + R I`, with an immediate
reset to ``v_reset`` when :math:`v > v_{threshold}`. Readers discretise it with forward Euler
at their own ``dt``: :math:`v \leftarrow (1 - dt/\tau) v + (dt/\tau)(v_{leak} + R I)`. The
integer neuron is :math:`V \leftarrow D(V) + (A \ll s) + b_c` with
:math:`D(V) \approx \beta V`, :math:`\beta = \text{decay\_mul} / 2^{\text{decay\_shift}}`.
Matching the two with a scaled membrane :math:`v = k_c V` gives, per dialect:

``norse`` (dt = 1e-3, norse's default; weights stay the integer codes)
    LIF: ``tau = dt / (1 - beta)``, ``r = 1``, ``v_leak = 0``,
    ``v_threshold = theta_c (1 - beta) / 2^s`` (so ``k = (1 - beta) / 2^s``), ``v_reset = 0``;
    the neuron bias moves into the preceding Conv2d/Affine bias as ``b_c / (2^s * pool area)``
    (readers start v at ``v_leak``, and the integer neuron starts at 0). Only when no
    Conv2d/Affine feeds the layer directly does it become ``v_leak = b_c / 2^s``.
    A layer with beta = 1 (no leak) becomes ``IF`` with ``r = 1/dt`` (``v += I``; norse's IAF
    ignores r and adds its input, which agrees) and ``v_threshold = theta_c / 2^s``.
    SumPool2d stays SumPool2d (norse maps it to ``LPPool2d(1)``, a plain sum).

``snntorch`` (dt = 1e-4, hard-coded in ``snntorch.import_nir``)
    snnTorch's reader needs one threshold per layer, ``v_leak = 0``, ``r * dt / tau`` the
    same for all neurons, and knows ``AvgPool2d`` but not ``SumPool2d``. So each channel's
    membrane is normalised by its threshold (``k_c = 1 / theta_c``, ``v_threshold = 1``),
    ``r = tau / dt`` (``r * dt / tau = 1``), and the preceding Conv2d/Affine absorbs the rest:
    weights times ``2^s * area / theta_c`` (``area`` = k^2 of the SumPool2d, which becomes
    AvgPool2d: ``avg * k^2 = sum``), bias ``b_c / theta_c``. Weights are then no longer integers;
    the integer codes are kept in the node metadata (``weight_int``, ``weight_gain``). beta = 1
    is approximated by ``tau = dt * 2^40``.

What NIR cannot say, and the metadata records (``qsnn_op``, ``threshold``, ``bias``,
``decay_mul``, ``decay_shift``, ``input_shift``, ``state``, ``reset``, ``reset_timing``,
``compare``, ``rounding``, ``overflow``, ``membrane_scale`` = k, ``beta``, ``dt``): the decay
is a rounded integer multiply-shift, not exactly ``1 - dt/tau``; the reset may subtract the
threshold and may act on the next step (delayed), where NIR resets to ``v_reset`` at once;
the comparison may be ``>=``; the membrane saturates or wraps at a fixed width. A reader that
wants bit-exact behaviour must implement these from the metadata (or read the JSON export).
The Output node's readout (graph and Output metadata ``readout``) is the spike count over T
steps, or, for ``membrane``, the last LIF's membrane after step T-1 (a non-spiking readout,
which NIR has no node for: a reader must take the membrane of the LIF before the Output).

Current-based layers (Linear -> CubaLIF, Xylo) become ``Affine`` -> ``CubaLIF``, a float
approximation in NIR's continuous-time form, discretised by forward Euler at the dialect's
``dt``. With a = 2^-dash_syn and b = 2^-dash_mem (Xylo's x - (x >> dash) without the +-1
rule, the per-event saturation and the int16 limits): the Affine holds the effective integer
weights wrap16(W << weight_shift), no bias; ``tau_syn = dt / a``, ``w_in = (1 - a) / a`` (Xylo
adds the input before the decay, Euler after), ``tau_mem = dt / b``, ``r = 1 / b`` and
``v_leak = bias / b`` (so v <- (1 - b) v + I + bias), ``v_threshold`` = threshold,
``v_reset = 0`` (Xylo subtracts the threshold per spike and fires up to ``spike_cap`` times a
step). The hop latency (``input_delay``), caps and the integer fields are in the metadata
(``qsnn_op`` CubaLIF). rockpool's NIR reader takes ``dt = tau_mem / (1 + r)`` and
``bias = v_leak``, conventions of its own, so it reads these parameters only approximately.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from qsnn_deploy.atomic import atomic_path
from qsnn_deploy.errors import ExportError
from qsnn_deploy.exporters._onnx_common import chain_of
from qsnn_deploy.exporters.nir_dialects import DIALECTS
from qsnn_deploy.ir import LIF, Conv2d, CubaLIF, Flatten, Graph, Input, Linear, Output, SumPool2d

#: tau / dt standing in for "no leak" where the reader has no IF neuron
NO_LEAK_TAU = 2.0**40


def _f32(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _lif_contract(node: LIF, dt: float, scale: Any) -> dict[str, Any]:
    return {
        "qsnn_op": "LIF",
        "threshold": node.threshold.values.copy(),
        "bias": node.bias.values.copy(),
        "decay_mul": node.decay_mul,
        "decay_shift": node.decay_shift,
        "input_shift": node.input_shift,
        "state": node.state.name,
        "reset": node.reset,
        "reset_timing": node.reset_timing,
        "compare": node.compare,
        "rounding": node.rounding,
        "overflow": node.overflow,
        # an array per channel, or one float (HDF5 cannot compress a 0-d dataset)
        "membrane_scale": np.asarray(scale, dtype=np.float64) if np.ndim(scale) else float(scale),
        "beta": node.decay,
        "dt": dt,
    }


def _feeding_synapse(chain: list[tuple[str, Any]], index: int) -> tuple[int, int] | None:
    """(index of the Conv2d/Linear feeding the LIF at ``index``, product of pool areas between).

    None when the path holds a Flatten (channels change meaning) or starts at the Input.
    """
    area = 1
    for j in range(index - 1, 0, -1):
        node = chain[j][1]
        if isinstance(node, SumPool2d):
            area *= node.kernel[0] * node.kernel[1]
        elif isinstance(node, (Conv2d, Linear)):
            return j, area
        else:
            return None
    return None


def _snntorch_neuron(name: str, node: LIF, full: tuple[int, ...], fed: tuple[int, int] | None, dt: float, folds: dict) -> Any:
    """snnTorch: thresholds and biases fold into the feeding synapse, the neuron has threshold 1."""
    import nir

    thr, bias, beta = node.threshold.values.astype(np.float64), node.bias.values.astype(np.float64), node.decay
    if fed is None:
        raise ExportError(
            f"LIF {name!r}: the snntorch dialect folds thresholds into the preceding Conv2d/Linear, "
            "and none feeds this layer directly (through sum pools only)"
        )
    j, area = fed
    folds[j] = {"gain": 2.0**node.input_shift * area / thr, "bias": bias / thr}
    tau = dt / (1.0 - beta) if beta < 1.0 else dt * NO_LEAK_TAU
    ones = np.ones(full, dtype=np.float32)
    return nir.LIF(
        tau=ones * np.float32(tau),
        r=ones * np.float32(tau / dt),
        v_leak=0 * ones,
        v_threshold=ones.copy(),
        v_reset=0 * ones,
        metadata=_lif_contract(node, dt, 1.0 / thr),
    )


def _norse_neuron(name: str, node: LIF, full: tuple[int, ...], fed: tuple[int, int] | None, dt: float, folds: dict) -> Any:
    """norse: per-neuron thresholds in membrane units; the bias rides on the feeding synapse."""
    import nir

    thr, bias, beta = node.threshold.values.astype(np.float64), node.bias.values.astype(np.float64), node.decay
    s2 = 2.0**node.input_shift
    per_chan = (-1,) + (1,) * (len(full) - 1)

    def expand(v: np.ndarray) -> np.ndarray:
        return _f32(np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(per_chan), full))

    # the bias rides on the synapse, so v_leak = 0: readers start v at v_leak, and V[-1] = 0
    leak = np.zeros_like(bias)
    if node.bias.values.any():
        if fed is not None:
            folds[fed[0]] = {"gain": np.ones_like(thr), "bias": bias / (s2 * fed[1])}
        elif beta < 1.0:
            leak = bias / s2  # no synapse to carry it: a resting potential (norse starts v there)
        else:
            raise ExportError(f"LIF {name!r}: NIR's IF neuron has no bias, and no Conv2d/Linear feeds this layer directly to carry it")
    ones = np.ones(full, dtype=np.float32)
    if beta < 1.0:
        k = (1.0 - beta) / s2
        return nir.LIF(
            tau=ones * np.float32(dt / (1.0 - beta)),
            r=ones,
            v_leak=expand(leak),
            v_threshold=expand(thr * k),
            v_reset=0 * ones,
            metadata=_lif_contract(node, dt, k),
        )
    return nir.IF(r=ones / np.float32(dt), v_threshold=expand(thr / s2), v_reset=0 * ones, metadata=_lif_contract(node, dt, 1.0 / s2))


def _plan(chain: list[tuple[str, Any]], dialect: str, dt: float) -> tuple[dict[int, Any], dict[int, dict[str, np.ndarray]]]:
    """NIR neurons per LIF index, and per synapse index the gain and bias to fold into it."""
    neurons: dict[int, Any] = {}
    folds: dict[int, dict[str, np.ndarray]] = {}
    shapes = [chain[0][1].shape]
    for _, node in chain[1:]:
        shapes.append(node.output_shape(shapes[-1]))
    make = _snntorch_neuron if dialect == "snntorch" else _norse_neuron
    for i, (name, node) in enumerate(chain):
        if isinstance(node, LIF):
            neurons[i] = make(name, node, shapes[i], _feeding_synapse(chain, i), dt, folds)
    return neurons, folds


def to_nir(graph: Graph, *, dialect: str = "norse") -> Any:
    """The :class:`nir.NIRGraph` of ``graph`` for ``dialect`` (see the module docstring).

    Raises:
        ExportError: unknown dialect, a graph that is not a chain, or a layer the dialect
            cannot express.
    """
    import nir

    if dialect not in DIALECTS:
        raise ExportError(f"unknown NIR dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")
    dt = DIALECTS[dialect]
    chain = chain_of(graph)
    neurons, folds = _plan(chain, dialect, dt)
    nodes: dict[str, Any] = {}
    shape: tuple[int, ...] = ()
    for i, (name, node) in enumerate(chain):
        in_shape = shape
        shape = node.output_shape(in_shape) if not isinstance(node, Input) else node.shape
        if isinstance(node, Input):
            nodes[name] = nir.Input(
                input_type={"input": np.array(shape)}, metadata={"qsnn_op": "Input", "dtype": node.dtype.name, "encoding": node.encoding}
            )
        elif isinstance(node, Linear) and i + 1 < len(chain) and isinstance(chain[i + 1][1], CubaLIF):
            nodes[name] = _cuba_synapse(nir, node, chain[i + 1][1])
        elif isinstance(node, (Conv2d, Linear)):
            nodes[name] = _synapse(nir, name, node, in_shape, folds.get(i))
        elif isinstance(node, CubaLIF):
            nodes[name] = _cuba_neuron(nir, node, dt)
        elif isinstance(node, SumPool2d):
            pool = nir.SumPool2d if dialect == "norse" else nir.AvgPool2d
            meta = (
                {"qsnn_op": "SumPool2d"}
                if dialect == "norse"
                else {"qsnn_op": "SumPool2d", "note": "sum = average * kernel area; the area is folded into the preceding weights"}
            )
            nodes[name] = pool(kernel_size=np.array(node.kernel), stride=np.array(node.stride), padding=np.array([0, 0]), metadata=meta)
        elif isinstance(node, Flatten):
            nodes[name] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1, metadata={"qsnn_op": "Flatten"})
        elif isinstance(node, LIF):
            nodes[name] = neurons[i]
        elif isinstance(node, Output):
            nodes[name] = nir.Output(output_type={"output": np.array(shape)}, metadata={"qsnn_op": "Output", "readout": node.readout})
        else:  # pragma: no cover - every IR node type is handled above
            raise ExportError(f"node {name!r}: NIR export cannot express {type(node).__name__}")
    metadata = {
        "format": "qsnn-deploy-nir",
        "version": 1,
        "dialect": dialect,
        "dt": dt,
        "readout": chain[-1][1].readout,
        "source_metadata": json.dumps(dict(graph.metadata), sort_keys=True, default=str),
    }
    if graph.timesteps is not None:  # NIR has no notion of a run length; a reader needs T for the spike counts
        metadata["timesteps"] = graph.timesteps
    edges = [(a, b) for (a, _), (b, _) in zip(chain, chain[1:])]
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)
    except (ValueError, AssertionError, NotImplementedError) as exc:
        raise ExportError(f"NIR rejects the exported graph: {exc}"[:400]) from None


def _synapse(nir: Any, name: str, node: Conv2d | Linear, in_shape: tuple[int, ...], fold: dict[str, np.ndarray] | None) -> Any:
    """Conv2d or Affine; ``fold`` scales each output channel's weights and sets its bias."""
    w = node.weight.values.astype(np.float64)
    out_ch = w.shape[0]
    gain = np.ones(out_ch) if fold is None else fold["gain"]
    bias = np.zeros(out_ch) if fold is None else fold["bias"]
    meta: dict[str, Any] = {"qsnn_op": type(node).__name__, "weight_dtype": node.weight.dtype.name}
    if not np.all(gain == 1.0):
        meta.update(weight_int=node.weight.values.copy(), weight_gain=gain.astype(np.float64))
    weight = _f32(w * gain.reshape((-1,) + (1,) * (w.ndim - 1)))
    if isinstance(node, Linear):
        return nir.Affine(weight=weight, bias=_f32(bias), metadata=meta)
    return nir.Conv2d(
        input_shape=tuple(in_shape[1:]),
        weight=weight,
        stride=tuple(node.stride),
        padding=tuple(node.padding),
        dilation=(1, 1),
        groups=1,
        bias=_f32(bias),
        metadata=meta,
    )


def _cuba_synapse(nir: Any, linear: Linear, node: CubaLIF) -> Any:
    """Affine with the effective weights wrap(W << weight_shift) of the CubaLIF it feeds."""
    weight = node.synapse_state.wrap(linear.weight.values.astype(np.int64) << node.weight_shift)
    meta = {
        "qsnn_op": "Linear",
        "weight_dtype": linear.weight.dtype.name,
        "weight_int": linear.weight.values.copy(),
        "weight_shift": node.weight_shift,
    }
    return nir.Affine(weight=_f32(weight), bias=_f32(np.zeros(weight.shape[0])), metadata=meta)


def _cuba_neuron(nir: Any, node: CubaLIF, dt: float) -> Any:
    """NIR CubaLIF approximating Xylo's neuron (module docstring)."""
    a = 2.0 ** -node.dash_syn.values.astype(np.float64)
    b = 2.0 ** -node.dash_mem.values.astype(np.float64)
    meta = {
        "qsnn_op": "CubaLIF",
        **{k: getattr(node, k).values.copy() for k in ("threshold", "bias", "dash_syn", "dash_mem")},
        **{k: getattr(node, k) for k in ("weight_shift", "input_cap", "input_delay", "spike_cap", "decay_rule", "reset", "compare")},
        "state": node.state.name,
        "synapse_state": node.synapse_state.name,
        "dt": dt,
    }
    return nir.CubaLIF(
        tau_syn=_f32(dt / a),
        tau_mem=_f32(dt / b),
        r=_f32(1.0 / b),
        v_leak=_f32(node.bias.values / b),
        v_threshold=_f32(node.threshold.values),
        v_reset=_f32(np.zeros_like(a)),
        w_in=_f32((1.0 - a) / a),
        metadata=meta,
    )


def export_nir(graph: Graph, path: str | os.PathLike[str], *, dialect: str = "norse") -> Path:
    """Write :func:`to_nir` with ``nir.write`` to ``path`` atomically (deterministic bytes)."""
    import nir

    ir = to_nir(graph, dialect=dialect)
    with atomic_path(path) as tmp:
        try:
            nir.write(tmp, ir)
        except (TypeError, ValueError) as exc:
            raise ExportError(f"nir.write cannot store the graph: {exc}"[:400]) from None
    return Path(path)
