"""Synthesizable Verilog of the frozen graph: the qsnn event-scatter core (docs/fpga.md).

``export_verilog(graph, DIR, timesteps=T, golden=x)`` writes a folder:

- ``qsnn_layer.v`` (one layer engine, package data) and ``qsnn_core.v`` (generated: the layer
  engines of this graph, their parameters, the input buffer, the step sequencer and the
  ready/valid streams); ``qsnn_up5k.v``, the place-and-route top (streams only on pins);
- ``layer<K>_weights.hex``, ``layer<K>_threshold.hex``, ``layer<K>_bias.hex``: the ROMs, one
  ``$readmemh`` word per line at the value's own bit width (two's complement);
- ``core.json``: the manifest the testbench and the synthesis report read (layers, shapes, T);
- ``golden.json`` (with ``golden``): inputs, the simulator's outputs (spike counts, or V[T-1] of a
  membrane readout) and every layer's
  spike raster (the spiking neurons of each step), from :func:`qsnn_deploy.sim.simulate`;
- ``test_qsnn.py`` (cocotb testbench), ``Makefile`` (``make test [SIM=icarus]``, ``make synth``)
  and ``synth_report.py`` (parses Yosys and nextpnr output into ``synth/report.json``).

The whole folder is written atomically. Supported layer shapes (else :class:`ExportError`): from
the Input or a LIF, optional Flatten nodes, one Linear or one stride-1 Conv2d followed by at most
one SumPool2d whose stride equals its power-of-two kernel, then a LIF.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from qsnn_deploy.analysis.bounds import intervals
from qsnn_deploy.atomic import atomic_directory
from qsnn_deploy.errors import ExportError
from qsnn_deploy.exporters._verilog_top import core_verilog, output_port, up5k_top_verilog
from qsnn_deploy.ir import LIF, Conv2d, Flatten, Graph, Output, SumPool2d

#: files copied verbatim from verilog_templates/ into every export
TEMPLATE_FILES = ("qsnn_layer.v", "test_qsnn.py", "Makefile", "synth_report.py", "verilator_main.cpp")
OVERFLOW_CODES = {"saturate": 0, "wrap": 1, "error": 2}


@dataclass(frozen=True)
class LayerPlan:
    """One layer engine: its source, its synapses and its LIF (parameters of qsnn_layer.v)."""

    name: str  # the LIF node's
    source: tuple[int, int, int]  # C, H, W of the source map (a vector N is (N, 1, 1))
    val_bits: int  # width of a source value: 1 for spikes, the Input type's bits for layer 0
    val_signed: bool
    static_source: bool  # layer 0 of a static Input: its synaptic sums are computed once
    linear: bool
    weight: np.ndarray  # in ROM address order
    weight_bits: int
    kernel: tuple[int, int]
    padding: tuple[int, int]
    conv: tuple[int, int]  # conv output H, W (before pooling)
    pool_shift: tuple[int, int]  # log2 of the sum pool's kernel (= stride)
    out: tuple[int, int, int]  # C, H, W of the LIF map
    acc_bits: int
    lif: LIF

    @property
    def neurons(self) -> int:
        return int(np.prod(self.out))

    @property
    def per_neuron(self) -> bool:
        return self.lif.threshold.shape[0] != self.out[0]  # a 1-D LIF after a Flatten: one channel per neuron


def _map3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    s = tuple(shape) + (1,) * (3 - len(shape))
    return (int(s[0]), int(s[1]), int(s[2]))


def signed_bits(lo: int, hi: int) -> int:
    """Fewest two's-complement bits holding every integer in [lo, hi]."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def _layer_groups(graph: Graph) -> list[list[tuple[str, Any]]]:
    """The chain cut after every LIF: each group's nodes end with its LIF."""
    groups: list[list[tuple[str, Any]]] = [[]]
    for name, node in graph.chain()[1:]:
        if isinstance(node, Output):
            if node.readout == "membrane" and not (groups[-1] == [] and len(groups) > 1):
                # the last engine keeps V[T-1] of its own LIF's neurons, which are the outputs
                raise ExportError("verilog: a membrane readout streams its LIF's membranes; the Output must follow that LIF directly")
            break
        groups[-1].append((name, node))
        if isinstance(node, LIF):
            groups.append([])
    if groups[-1] and any(not isinstance(n, Flatten) for _, n in groups[-1]):
        raise ExportError("verilog: the Output must follow a LIF (optionally through a Flatten)")
    return [g for g in groups if g]


def _pool_shift(pool: SumPool2d | None, where: str) -> tuple[int, int]:
    if pool is None:
        return (0, 0)
    if pool.kernel != pool.stride or any(k & (k - 1) for k in pool.kernel):
        raise ExportError(
            f"verilog: {where}: SumPool2d needs stride == kernel, a power of two (got kernel {pool.kernel}, stride {pool.stride})"
        )
    return (pool.kernel[0].bit_length() - 1, pool.kernel[1].bit_length() - 1)


def plan_layers(graph: Graph) -> list[LayerPlan]:
    """The layer engines of ``graph``, in chain order.

    Raises:
        ExportError: a layer the core does not implement (see the module docstring).
    """
    shapes, bounds = graph.shapes(), intervals(graph)
    inp = graph.input
    prev_shape, val_bits, val_signed = _map3(inp.shape), inp.dtype.bits, inp.dtype.signed
    static = inp.encoding == "static"
    plans = []
    for group in _layer_groups(graph):
        name, lif = group[-1]
        ops = [(n, v) for n, v in group[:-1] if not isinstance(v, Flatten)]
        kinds = [type(v).__name__ for _, v in ops]
        if kinds not in (["Linear"], ["Conv2d"], ["Conv2d", "SumPool2d"]):
            raise ExportError(
                f"verilog: layer {name!r} is {'+'.join(kinds) or 'empty'}; the core implements Linear, Conv2d or Conv2d+SumPool2d before a LIF"
            )
        syn = ops[0][1]
        conv_out = shapes[ops[0][0]]
        if isinstance(syn, Conv2d) and syn.stride != (1, 1):
            raise ExportError(f"verilog: layer {name!r}: Conv2d stride {syn.stride} (the core implements stride 1)")
        lo, hi = bounds[graph.predecessors(name)[0]]
        is_conv = isinstance(syn, Conv2d)
        out = _map3(shapes[ops[-1][0]])
        plans.append(
            LayerPlan(
                name=name,
                source=prev_shape,
                val_bits=val_bits,
                val_signed=val_signed,
                static_source=static,
                linear=not is_conv,
                weight=syn.weight.values.reshape(-1),
                weight_bits=syn.weight.dtype.bits,
                kernel=tuple(syn.weight.shape[2:]) if is_conv else (1, 1),
                padding=tuple(syn.padding) if is_conv else (0, 0),
                conv=tuple(conv_out[1:]) if is_conv else (1, 1),
                pool_shift=_pool_shift(ops[1][1] if len(ops) > 1 else None, name),
                out=out,
                acc_bits=max(signed_bits(int(lo), int(hi)), syn.weight.dtype.bits + val_bits + 1),
                lif=lif,
            )
        )
        prev_shape, val_bits, val_signed, static = _map3(shapes[name]), 1, False, False
    return plans


def hex_words(values: np.ndarray, bits: int) -> str:
    """One two's-complement hex word per line, ``bits`` wide (``$readmemh`` input)."""
    digits, mask = (bits + 3) // 4, (1 << bits) - 1
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in np.asarray(values).reshape(-1))


def manifest(graph: Graph, plans: list[LayerPlan], timesteps: int) -> dict[str, Any]:
    """What the testbench and the synthesis report need to know about the core."""
    inp = graph.input
    return {
        "format": "qsnn-deploy-verilog",
        "version": 1,
        "top": "qsnn_core",
        "timesteps": timesteps,
        "input": {"shape": list(inp.shape), "bits": inp.dtype.bits, "signed": inp.dtype.signed, "encoding": inp.encoding},
        "outputs": plans[-1].neurons,
        "output": dict(zip(("readout", "bits"), output_port(graph, plans, timesteps))),
        "layers": [
            {
                "name": p.name,
                "neurons": p.neurons,
                "source_neurons": int(np.prod(p.source)),
                "synapses_per_event": int(p.out[0] if p.linear else p.out[0] * p.kernel[0] * p.kernel[1]),
                "static_source": p.static_source,
                "weights": int(p.weight.size),
                "weight_bits": p.weight_bits,
                "acc_bits": p.acc_bits,
                "state_bits": p.lif.state.bits,
            }
            for p in plans
        ],
    }


def golden_vectors(graph: Graph, plans: list[LayerPlan], x: np.ndarray, timesteps: int) -> dict[str, Any]:
    """Inputs, output counts and per-layer per-step spike rasters from the simulator."""
    from qsnn_deploy.sim import simulate

    res = simulate(graph, x, timesteps, record=True)
    samples = []
    for b in range(x.shape[0]):
        rasters = {p.name: [np.flatnonzero(res.spikes[p.name][t, b].reshape(-1)).tolist() for t in range(timesteps)] for p in plans}
        samples.append({"input": np.asarray(x[b]).reshape(-1).tolist(), "counts": res.counts[b].tolist(), "rasters": rasters})
    return {"timesteps": timesteps, "samples": samples}


def export_verilog(graph: Graph, path: str | os.PathLike[str], *, timesteps: int | None = None, golden: np.ndarray | None = None) -> Path:
    """Write the Verilog core of ``graph`` (and its testbench and golden vectors) into folder ``path``.

    Args:
        graph: the frozen integer graph.
        path: the output folder (replaced atomically).
        timesteps: T, the steps per sample (a parameter of the core); required.
        golden: input samples, (N, *input shape) or (N, T, *input shape) for frames.

    Raises:
        ExportError: no T, or a graph the core does not implement.
    """
    if type(timesteps) is not int or timesteps < 1:
        raise ExportError(f"verilog: the core needs timesteps T >= 1 (a parameter of the hardware), got {timesteps!r}")
    plans = plan_layers(graph)
    info = manifest(graph, plans, timesteps)
    data = golden_vectors(graph, plans, np.asarray(golden), timesteps) if golden is not None else None
    templates = resources.files("qsnn_deploy.exporters") / "verilog_templates"
    with atomic_directory(path) as tmp:
        for name in TEMPLATE_FILES:
            with resources.as_file(templates / name) as src:
                shutil.copyfile(src, tmp / name)
        for k, p in enumerate(plans):
            (tmp / f"layer{k}_weights.hex").write_text(hex_words(p.weight, p.weight_bits))
            (tmp / f"layer{k}_threshold.hex").write_text(hex_words(p.lif.threshold.values, p.lif.state.bits))
            (tmp / f"layer{k}_bias.hex").write_text(hex_words(p.lif.bias.values, p.lif.state.bits))
        (tmp / "qsnn_core.v").write_text(core_verilog(graph, plans, timesteps, OVERFLOW_CODES))
        (tmp / "qsnn_up5k.v").write_text(up5k_top_verilog(graph, plans, timesteps))
        (tmp / "core.json").write_text(json.dumps(info, indent=1) + "\n")
        if data is not None:
            (tmp / "golden.json").write_text(json.dumps(data, separators=(",", ":")) + "\n")
    return Path(path)


__all__ = ["LayerPlan", "export_verilog", "hex_words", "manifest", "plan_layers", "signed_bits"]
