r"""Freeze a convex-trained witness-stack network (:mod:`qsnn_deploy.training.convex`) into the IR.

The graph is a chain::

    Input (C, 1, 1) frames -> Flatten -> [Linear -> LIF] x L (hidden, block-diagonal after layer 1)
        -> Linear (integer readout W) -> LIF (readout) -> Output(readout="membrane")

The readout LIF never spikes (its threshold is the state's maximum, which a saturating membrane
cannot exceed; the score bound is checked so it never saturates either) and its membrane is the class
score: with ``decay_mul = 0`` it is V[T-1] = W S_L[T-1] + b (features at the last step); with
``decay_mul = 2^k`` (beta = 1) it is V[T-1] = W sum_t S_L[t] + T b (spike counts; b is a per-step bias).

**Pruning.** A feature neuron whose readout column is zero is removed, then every hidden neuron
whose outgoing weights to the kept neurons are all zero, layer by layer towards the input: the
deployed graph holds only the neurons the readout needs, and computes the same scores.

The model is read by duck typing (``model.config``, ``model.hidden``, ``model.readout_weight``,
``model.readout_bias``): the core does not import training.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qsnn_deploy.encodings import FRAMES
from qsnn_deploy.errors import TargetError
from qsnn_deploy.ir import LIF, Flatten, Graph, Input, IntTensor, Linear, Output
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.targets import TargetProfile, load_target


def prune_masks(dense: list[np.ndarray], readout: np.ndarray) -> list[np.ndarray]:
    """Per hidden layer, a bool mask of the neurons kept (those with a path to a nonzero readout weight)."""
    keep = np.abs(readout).sum(axis=0) > 0
    masks = [keep]
    for w in reversed(dense[1:]):
        keep = np.abs(w[masks[0]]).sum(axis=0) > 0
        masks.insert(0, keep)
    return masks


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
    masks = prune_masks(dense, readout_w) if prune else [np.ones(w.shape[0], bool) for w in dense]
    in_type = IntType(1, False) if cfg.input_max <= 1 else target.input
    nodes: list[tuple[str, Any]] = [
        ("input", Input(shape=(cfg.input_size, 1, 1), dtype=in_type, encoding=FRAMES)),
        ("flatten", Flatten()),
    ]
    prev = np.ones(cfg.input_size, bool)
    state = arith.state
    for i, (w, b, theta, keep) in enumerate(zip(dense, hidden.biases, hidden.thresholds, masks)):
        if not keep.any():
            raise TargetError("every readout weight is zero: the pruned network has no neurons (choose a smaller strength)")
        n = int(keep.sum())
        nodes.append((f"fc{i + 1}", Linear(weight=IntTensor(w[keep][:, prev], target.weight))))
        lif = LIF(
            threshold=IntTensor(np.full(n, theta, np.int64), state),
            bias=IntTensor(b.reshape(-1)[keep], state),
            decay_mul=cfg.decay_mul,
            **arith.fields(),
        )
        nodes.append((f"lif{i + 1}", lif))
        prev = keep
    steps = cfg.timesteps if cfg.features == "count" else 1  # the readout integrates W S + b at every step
    score_bound = (int(np.abs(readout_w).sum(axis=1).max()) + int(np.abs(readout_b).max())) * steps
    if score_bound >= state.max:
        raise TargetError(f"readout scores reach {score_bound}, beyond the state type {state.name}")
    nodes.append(("readout", Linear(weight=IntTensor(readout_w[:, prev], target.weight))))
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
        "kept_neurons": [int(m.sum()) for m in masks],
        "neurons_before_pruning": [int(m.size) for m in masks],
    }
    return Graph.sequential(nodes, metadata, timesteps=cfg.timesteps)


__all__ = ["freeze_stack", "prune_masks"]
