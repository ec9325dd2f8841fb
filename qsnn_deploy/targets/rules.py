"""Target limits as a list of named rules (after rockpool's Xylo design-rule checks).

Each rule is a plain function ``rule(graph, target) -> None`` whose name reads as the
sentence it checks, and raises :class:`~qsnn_deploy.errors.TargetError` naming itself, the
layer, the limit and the value when the graph breaks it::

    rule fan_in_within_limit: layer 'fc' has fan-in 1024 > limit 512

:data:`RULES` lists them in the order they run; :func:`check_target` runs them all and
raises one error listing every failure, :func:`check_target_report` returns each rule's
outcome. A limit missing from ``target.limits`` is not checked.

Definitions: a *layer* for the neuron limits is a LIF node; the *fan-in* of a Conv2d is
I x KH x KW and of a Linear its ``in_features``; *weight memory* is every weight stored at the
target's weight width; the *worst-case synaptic sum* propagates the input type's range
through the synaptic and pooling nodes as an interval (per output channel:
sum over inputs of max(w * lo, w * hi)), with 0/1 after every LIF.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from qsnn_deploy.analysis.bounds import intervals
from qsnn_deploy.errors import GraphError, TargetError
from qsnn_deploy.ir import LIF, Conv2d, CubaLIF, Graph, Input, Linear, SumPool2d
from qsnn_deploy.targets import TargetProfile

Rule = Callable[[Graph, TargetProfile], None]


def _rule(fn: Rule) -> Rule:
    """Prefix the rule's failures with its name (so each rule names itself when it fails)."""

    @functools.wraps(fn)
    def checked(graph: Graph, target: TargetProfile) -> None:
        try:
            fn(graph, target)
        except (TargetError, GraphError) as exc:
            raise TargetError(f"rule {fn.__name__}: {exc}") from None

    return checked


def _fail_if(problems: list[str]) -> None:
    if problems:
        raise TargetError("; ".join(problems))


def _synaptic(graph: Graph) -> list[tuple[str, Conv2d | Linear]]:
    return [(n, v) for n, v in graph.nodes.items() if isinstance(v, (Conv2d, Linear))]


def _lifs(graph: Graph) -> list[tuple[str, LIF]]:
    return [(n, v) for n, v in graph.nodes.items() if isinstance(v, LIF)]


def _limit(target: TargetProfile, key: str) -> int | None:
    value = target.limits.get(key)
    return int(value) if value is not None else None


# --- the rules ------------------------------------------------------------------------------


@_rule
def graph_is_a_chain(graph: Graph, target: TargetProfile) -> None:
    """The core runs a chain of layers: no branches, Input first, Output last."""
    graph.chain()


@_rule
def inputs_fit_target_input_type(graph: Graph, target: TargetProfile) -> None:
    """The Input type's range lies within the target's input type."""
    inp = graph.input
    if inp.dtype.min < target.input.min or inp.dtype.max > target.input.max:
        name = next(n for n, v in graph.nodes.items() if isinstance(v, Input))
        raise TargetError(
            f"input {name!r} has type {inp.dtype.name} [{inp.dtype.min}, {inp.dtype.max}], beyond limit "
            f"{target.input.name} [{target.input.min}, {target.input.max}]"
        )


@_rule
def weights_fit_target_weight_type(graph: Graph, target: TargetProfile) -> None:
    """Every weight value fits the target's weight type."""
    w_type = target.weight
    problems = []
    for name, node in _synaptic(graph):
        vals = node.weight.values
        if not w_type.contains(vals):
            problems.append(
                f"layer {name!r} has weights in [{int(vals.min())}, {int(vals.max())}], beyond limit "
                f"{w_type.name} [{w_type.min}, {w_type.max}]"
            )
    _fail_if(problems)


@_rule
def lif_state_matches_target(graph: Graph, target: TargetProfile) -> None:
    """Every LIF's membrane is the target's state type (thresholds and biases then fit it)."""
    _fail_if(
        [
            f"layer {name!r} has state {node.state.name}, limit is the target's {target.state.name}"
            for name, node in _lifs(graph)
            if node.state != target.state
        ]
    )


@_rule
def lif_arithmetic_matches_target(graph: Graph, target: TargetProfile) -> None:
    """Every LIF computes the target's neuron arithmetic (decay shift, rounding, overflow, comparison, reset).

    A current-based CubaLIF is another neuron than these cores' LIF (Xylo's, see targets/xylo_rules.py).
    """
    problems = [
        f"layer {name!r} is a current-based CubaLIF, target {target.name} computes plain LIF neurons"
        for name, node in graph.nodes.items()
        if isinstance(node, CubaLIF)
    ]
    for name, node in _lifs(graph):
        for field, have, want in node.arithmetic.differences(target.arithmetic):
            if field != "state":  # lif_state_matches_target reports the state
                problems.append(f"layer {name!r} has {field} {have!r}, limit is the target's {want!r}")
    _fail_if(problems)


@_rule
def layer_count_within_limit(graph: Graph, target: TargetProfile) -> None:
    """At most ``max_layers`` LIF layers."""
    limit = _limit(target, "max_layers")
    count = len(_lifs(graph))
    if limit is not None and count > limit:
        raise TargetError(f"graph has {count} LIF layers > limit {limit}")


@_rule
def layer_neurons_within_limit(graph: Graph, target: TargetProfile) -> None:
    """Each LIF layer has at most ``max_neurons_per_layer`` neurons."""
    limit = _limit(target, "max_neurons_per_layer")
    if limit is None:
        return
    shapes = graph.shapes()
    _fail_if(
        [
            f"layer {name!r} has {int(np.prod(shapes[name]))} neurons > limit {limit}"
            for name, _ in _lifs(graph)
            if int(np.prod(shapes[name])) > limit
        ]
    )


@_rule
def total_neurons_within_limit(graph: Graph, target: TargetProfile) -> None:
    """All LIF layers together have at most ``max_neurons`` neurons."""
    limit = _limit(target, "max_neurons")
    shapes = graph.shapes()
    total = sum(int(np.prod(shapes[name])) for name, _ in _lifs(graph))
    if limit is not None and total > limit:
        raise TargetError(f"graph has {total} neurons > limit {limit}")


def fan_in(node: Conv2d | Linear) -> int:
    """Inputs per output of a synaptic node: I x KH x KW (Conv2d) or in_features (Linear)."""
    return int(np.prod(node.weight.shape[1:]))


@_rule
def fan_in_within_limit(graph: Graph, target: TargetProfile) -> None:
    """Each synaptic node has fan-in at most ``max_fan_in``."""
    limit = _limit(target, "max_fan_in")
    if limit is None:
        return
    _fail_if([f"layer {name!r} has fan-in {fan_in(node)} > limit {limit}" for name, node in _synaptic(graph) if fan_in(node) > limit])


@_rule
def weight_memory_within_limit(graph: Graph, target: TargetProfile) -> None:
    """All weights, stored at the target's weight width, fit ``max_weight_memory_bits``."""
    limit = _limit(target, "max_weight_memory_bits")
    bits = sum(int(np.prod(node.weight.shape)) for _, node in _synaptic(graph)) * target.weight.bits
    if limit is not None and bits > limit:
        raise TargetError(f"graph has {bits} weight bits ({target.weight.name}) > limit {limit}")


@_rule
def accumulator_bound_fits(graph: Graph, target: TargetProfile) -> None:
    """Every worst-case synaptic sum (and partial sum before a pool) fits ``target.accumulator``."""
    acc = target.accumulator
    problems = []
    for name, (lo, hi) in intervals(graph).items():
        if isinstance(graph.nodes[name], (Conv2d, Linear, SumPool2d)) and (lo < acc.min or hi > acc.max):
            worst = hi if hi > acc.max else lo
            limit = acc.max if hi > acc.max else acc.min
            problems.append(f"layer {name!r} has worst-case synaptic sum {worst} beyond limit {limit} ({acc.name})")
    _fail_if(problems)


def membrane_saturation_risks(graph: Graph, timesteps: int) -> list[str]:
    """One warning per LIF layer whose worst-case membrane can exceed its state type.

    The bound is docs/arithmetic.md's: (max |A| << F + max |B| + max Theta) times the memory
    min(1 / (1 - decay), T) of a leaky integrator (without Theta for neurons that never fire and so
    never reset: a ``gt`` comparison against the state's maximum). Freeze chooses F so this fits unless the
    state is too narrow even for F = 0; then ``ovf`` will act on extreme inputs.
    """
    bounds = intervals(graph)
    warnings = []
    for name, node in _lifs(graph):
        lo, hi = bounds[graph.predecessors(name)[0]]
        drive = max(abs(lo), abs(hi)) << node.input_shift
        # a neuron that cannot fire (compare gt against the state's maximum: a non-spiking readout) is never reset
        fires = node.compare != "gt" or int(node.threshold.values.min()) < node.state.max
        per_step = drive + int(np.abs(node.bias.values).max()) + (int(node.threshold.values.max()) if fires else 0)
        memory = timesteps if node.decay >= 1.0 else min(1.0 / (1.0 - node.decay), float(timesteps))
        reach = per_step * memory
        if reach > node.state.max:
            warnings.append(
                f"layer {name!r}: worst-case membrane {reach:,.0f} exceeds the state type {node.state.name} "
                f"(max {node.state.max:,}) at input_shift {node.input_shift}; '{node.overflow}' will act on extreme inputs"
            )
    return warnings


#: every rule, in the order :func:`check_target` runs them
RULES: list[Rule] = [
    graph_is_a_chain,
    inputs_fit_target_input_type,
    weights_fit_target_weight_type,
    lif_state_matches_target,
    lif_arithmetic_matches_target,
    layer_count_within_limit,
    layer_neurons_within_limit,
    total_neurons_within_limit,
    fan_in_within_limit,
    weight_memory_within_limit,
    accumulator_bound_fits,
]


def check_target_report(graph: Graph, target: TargetProfile, rules: list[Rule] | None = None) -> list[tuple[str, str | None]]:
    """(rule name, failure message or None) for every rule."""
    out: list[tuple[str, str | None]] = []
    for rule in RULES if rules is None else rules:
        try:
            rule(graph, target)
            out.append((rule.__name__, None))
        except TargetError as exc:
            out.append((rule.__name__, str(exc)))
    return out


def check_target(graph: Graph, target: TargetProfile, rules: list[Rule] | None = None) -> None:
    """Run every rule; raise one :class:`TargetError` listing all failures, if any."""
    failures = [msg for _, msg in check_target_report(graph, target, rules) if msg is not None]
    if failures:
        raise TargetError("; ".join(failures) if len(failures) > 1 else failures[0])


__all__ = ["RULES", "Rule", "check_target", "check_target_report", "fan_in", *[r.__name__ for r in RULES]]
