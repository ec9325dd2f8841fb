"""Xylo's design rules (after rockpool's ``xylo_drc`` lists), as named rule functions.

Each rule is ``rule(graph, target) -> None`` and raises :class:`~qsnn_deploy.errors.TargetError`
naming itself, the layer, the limit and the excess, like :mod:`qsnn_deploy.targets.rules`.
The mapping they check (docs/targets.md): a chain Input -> (Linear -> CubaLIF)+ -> Output whose
last CubaLIF is Xylo's output population and whose other CubaLIFs are, in order, blocks of
the hidden population; Linear k > 1 becomes the block of the recurrent weights from hidden
layer k-1 to hidden layer k. A limit missing from ``target.limits`` is not checked.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qsnn_deploy.errors import GraphError
from qsnn_deploy.ir import LIF, Conv2d, CubaLIF, Graph, SumPool2d
from qsnn_deploy.targets import TargetProfile
from qsnn_deploy.targets.rules import Rule, _fail_if, _limit, _rule, inputs_fit_target_input_type, weights_fit_target_weight_type


def _neuron_layers(graph: Graph) -> list[tuple[str, int]]:
    """(name, neuron count) of every spiking layer (LIF or CubaLIF), in chain order."""
    shapes = graph.shapes()
    return [(n, int(np.prod(shapes[n]))) for n, v in graph.chain() if isinstance(v, (LIF, CubaLIF))]


def _cuba(graph: Graph) -> list[tuple[str, CubaLIF]]:
    return [(n, v) for n, v in graph.chain() if isinstance(v, CubaLIF)]


def _over(what: str, value: int, limit: int | None) -> list[str]:
    if limit is None or value <= limit:
        return []
    return [f"{what} {value:,} > limit {limit:,} (excess {value - limit:,})"]


@_rule
def layers_are_dense_current_based(graph: Graph, target: TargetProfile) -> None:
    """The graph is Input -> (Linear -> CubaLIF)+ -> Output with at least one hidden and one output layer."""
    problems = []
    for name, node in graph.chain():
        if isinstance(node, (Conv2d, SumPool2d)):
            problems.append(f"layer {name!r} is {node.op}: not mappable (Xylo has dense weights only)")
        elif isinstance(node, LIF):
            problems.append(f"layer {name!r} is a LIF without synaptic current: not Xylo's neuron (CubaLIF)")
    if not problems:
        from qsnn_deploy.sim.cuba_chain import cuba_layers

        try:
            if len(cuba_layers(graph)) < 2:
                problems.append("Xylo needs at least one hidden and one output layer, the graph has 1 CubaLIF layer")
        except GraphError as exc:
            problems.append(str(exc))
    _fail_if(problems)


@_rule
def inputs_within_limit(graph: Graph, target: TargetProfile) -> None:
    """At most ``max_inputs`` input channels."""
    _fail_if(_over("graph has input channels", int(np.prod(graph.input.shape)), _limit(target, "max_inputs")))


@_rule
def hidden_neurons_within_limit(graph: Graph, target: TargetProfile) -> None:
    """All spiking layers but the last together have at most ``max_hidden_neurons`` neurons."""
    hidden = sum(n for _, n in _neuron_layers(graph)[:-1])
    _fail_if(_over("graph has hidden neurons", hidden, _limit(target, "max_hidden_neurons")))


@_rule
def outputs_within_limit(graph: Graph, target: TargetProfile) -> None:
    """The last spiking layer (the readout) has at most ``max_outputs`` neurons."""
    layers = _neuron_layers(graph)
    if layers:
        _fail_if(_over(f"output layer {layers[-1][0]!r} has neurons", layers[-1][1], _limit(target, "max_outputs")))


@_rule
def recurrent_weights_within_limit(graph: Graph, target: TargetProfile) -> None:
    """The hidden -> hidden weight blocks hold at most ``max_recurrent_weights`` entries."""
    layers = _neuron_layers(graph)[:-1]
    count = sum(a * b for (_, a), (_, b) in zip(layers, layers[1:]))
    _fail_if(_over("graph has recurrent (hidden -> hidden) weights", count, _limit(target, "max_recurrent_weights")))


@_rule
def expansion_neurons_within_limit(graph: Graph, target: TargetProfile) -> None:
    """Inputs reach at most ``max_input_expansion_neurons`` hidden neurons; the readout hears at most ``max_output_expansion_neurons``."""
    hidden = _neuron_layers(graph)[:-1]
    if not hidden:
        return
    problems = _over(
        f"first hidden layer {hidden[0][0]!r} (input fan-out) has neurons", hidden[0][1], _limit(target, "max_input_expansion_neurons")
    )
    limit = _limit(target, "max_output_expansion_neurons")
    problems += _over(f"last hidden layer {hidden[-1][0]!r} (readout fan-in) has neurons", hidden[-1][1], limit)
    _fail_if(problems)


@_rule
def neuron_arithmetic_matches_target(graph: Graph, target: TargetProfile) -> None:
    """Every CubaLIF computes the target's arithmetic; hidden layers its ``spike_cap``, the readout 1 spike per step."""
    problems = []
    layers = _cuba(graph)
    for k, (name, node) in enumerate(layers):
        want = dataclasses.replace(target.arithmetic, spike_cap=1 if k == len(layers) - 1 else target.arithmetic.spike_cap)
        problems += [f"layer {name!r} has {f} {have!r}, limit is the target's {w!r}" for f, have, w in node.arithmetic.differences(want)]
    _fail_if(problems)


def _effective_cap(arriving_max: int, cap: int) -> int:
    """The most events a neuron can receive per presynaptic channel and step (cap 0: none)."""
    return min(arriving_max, cap) if cap else arriving_max


@_rule
def hops_and_caps_match_chip(graph: Graph, target: TargetProfile) -> None:
    """Layer 1 hears the input in its own step, capped at ``max_input_events``; every later hop costs a step, capped at ``spike_cap``."""
    problems = []
    layers = _cuba(graph)
    arriving = graph.input.dtype.max
    for k, (name, node) in enumerate(layers):
        want_delay = 0 if k == 0 else 1
        if node.input_delay != want_delay:
            problems.append(f"layer {name!r} has input_delay {node.input_delay}, the chip's is {want_delay}")
        chip_cap = (_limit(target, "max_input_events") or 0) if k == 0 else target.arithmetic.spike_cap
        if _effective_cap(arriving, node.input_cap) != _effective_cap(arriving, chip_cap):
            problems.append(f"layer {name!r} caps incoming events at {node.input_cap}, the chip at {chip_cap}")
        arriving = node.spike_cap
    _fail_if(problems)


@_rule
def weight_shifts_fit_chip(graph: Graph, target: TargetProfile) -> None:
    """One weight shift per population (input, recurrent, readout), each at most ``max_weight_shift``."""
    layers = _cuba(graph)
    problems = []
    for name, node in layers:
        problems += _over(f"layer {name!r} has weight_shift", node.weight_shift, _limit(target, "max_weight_shift"))
    recurrent = {node.weight_shift for _, node in layers[1:-1]}
    if len(recurrent) > 1:
        names = [n for n, _ in layers[1:-1]]
        problems.append(f"hidden layers {names} have weight shifts {sorted(recurrent)}; the chip has one shift for all recurrent weights")
    _fail_if(problems)


#: every Xylo rule, in the order they run
XYLO_RULES: list[Rule] = [
    layers_are_dense_current_based,
    inputs_fit_target_input_type,
    weights_fit_target_weight_type,
    inputs_within_limit,
    hidden_neurons_within_limit,
    outputs_within_limit,
    recurrent_weights_within_limit,
    expansion_neurons_within_limit,
    neuron_arithmetic_matches_target,
    hops_and_caps_match_chip,
    weight_shifts_fit_chip,
]

__all__ = ["XYLO_RULES", *[r.__name__ for r in XYLO_RULES]]
