r"""Freeze a convex-trained witness-stack network (:mod:`qsnn_deploy.training.convex`) into the IR.

The graph is a chain::

    Input (C, 1, 1) frames -> Flatten -> [Linear -> LIF] x L (hidden, block-diagonal after layer 1)
        -> Linear (integer readout W) -> LIF (readout) -> Output(readout="membrane")

The readout LIF never spikes (its threshold is the state's maximum, which a saturating membrane
cannot exceed; the score bound is checked so it never saturates either) and its membrane is the class
score: with ``decay_mul = 0`` it is V[T-1] = W S_L[T-1] + b (features at the last step); with
``decay_mul = 2^k`` (beta = 1) it is V[T-1] = W sum_t S_L[t] + T b (spike counts; b is a per-step bias).

**Pruning** (:func:`qsnn_deploy.passes.prune.prune_unread_neurons`). A feature neuron whose readout
column is zero is removed, then every hidden neuron whose outgoing weights to the kept neurons are
all zero, layer by layer towards the input: the deployed graph holds only the neurons the readout
needs, and computes the same scores.

The model is read by duck typing (``model.config``, ``model.hidden``, ``model.readout_weight``,
``model.readout_bias``): the core does not import training.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from qsnn_deploy.analysis.bounds import readout_score_bound
from qsnn_deploy.encodings import FRAMES
from qsnn_deploy.errors import GraphError, TargetError
from qsnn_deploy.ir import LIF, Flatten, Graph, Input, IntTensor, Linear, Output
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.passes.prune import prune_unread_neurons
from qsnn_deploy.targets import TargetProfile, load_target


def freeze_stack(model: Any, target: TargetProfile | str = "seq-core", *, prune: bool = True) -> Graph:
    """The integer graph of a witness-stack model; raises TargetError if it does not fit ``target``."""
    target = load_target(target)
    cfg, hidden = model.config, model.hidden
    arith = cfg.arithmetic
    if arith.differences(target.arithmetic):
        raise TargetError(f"the model's neuron arithmetic differs from target {target.name}'s: {arith.differences(target.arithmetic)}")
    dense = hidden.dense()
    readout_w = np.asarray(model.readout_weight, np.int64)
    readout_b = np.asarray(model.readout_bias, np.int64)
    in_type = IntType(1, False) if cfg.input_max <= 1 else target.input
    nodes: list[tuple[str, Any]] = [
        ("input", Input(shape=(cfg.input_size, 1, 1), dtype=in_type, encoding=FRAMES)),
        ("flatten", Flatten()),
    ]
    state = arith.state
    if not readout_w.any():
        raise TargetError("every readout weight is zero: the pruned network has no neurons (choose a smaller strength)")
    for i, (w, b, theta) in enumerate(zip(dense, hidden.biases, hidden.thresholds)):
        nodes.append((f"fc{i + 1}", Linear(weight=IntTensor(w, target.weight))))
        lif = LIF(
            threshold=IntTensor(np.full(w.shape[0], theta, np.int64), state),
            bias=IntTensor(b.reshape(-1), state),
            decay_mul=cfg.decay_mul,
            **arith.fields(),
        )
        nodes.append((f"lif{i + 1}", lif))
    steps = cfg.timesteps if cfg.features == "count" else 1  # the readout integrates W S + b at every step
    score_bound = readout_score_bound(readout_w, readout_b, 0, steps)
    if score_bound >= state.max:
        raise TargetError(f"readout scores reach {score_bound}, beyond the state type {state.name}")
    nodes.append(("readout", Linear(weight=IntTensor(readout_w, target.weight))))
    fields = arith.fields()
    nodes.append(
        (
            "scores",
            LIF(
                threshold=IntTensor(np.full(len(readout_b), state.max, np.int64), state),  # unreachable: never spikes
                bias=IntTensor(readout_b, state),
                decay_mul=0 if cfg.features == "last" else 2**cfg.decay_shift,
                **fields,
            ),
        )
    )
    nodes.append(("output", Output(readout="membrane")))
    metadata = {
        "producer": "qsnn-deploy freeze (convex witness stacks)",
        "target": target.name,
        "model_config": {**cfg.to_dict(), "dataset": getattr(model, "dataset", None)},
        "neurons_before_pruning": [int(w.shape[0]) for w in dense],
    }
    graph = Graph.sequential(nodes, metadata, timesteps=cfg.timesteps)
    if not prune:
        return graph
    try:
        pruned = prune_unread_neurons(graph)
    except GraphError as exc:
        raise TargetError(f"the pruned network has an empty layer ({exc}); choose a smaller strength") from None
    kept = [int(pruned.nodes[f"lif{i + 1}"].threshold.shape[0]) for i in range(len(dense))]
    return dataclasses.replace(pruned, metadata={**pruned.metadata, "kept_neurons": kept})


__all__ = ["freeze_stack"]
