"""Target rules (qsnn_deploy.targets.rules): each fires on a crafted violation and passes on a fit."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from graph_factory import make_graph  # noqa: E402

from qsnn_deploy.analysis.bounds import intervals  # noqa: E402
from qsnn_deploy.errors import TargetError  # noqa: E402
from qsnn_deploy.ir import LIF, Conv2d, Graph, IntTensor, Linear  # noqa: E402
from qsnn_deploy.ir.dtypes import IntType  # noqa: E402
from qsnn_deploy.targets import (  # noqa: E402
    TargetProfile,
    load_target,
    rules,  # noqa: E402
)

TARGET = load_target("int4-core")


@pytest.fixture(scope="module")
def fitting() -> Graph:
    # int4-core arithmetic: INT24 state, decay shift 16, half_up, saturate, gt, delayed subtract
    return make_graph(1, decay_shift=16)


def replace_nodes(graph: Graph, kind: type, **changes: Any) -> Graph:
    for name, node in graph.nodes.items():
        if isinstance(node, kind):
            graph = graph.replace_node(name, dataclasses.replace(node, **changes))
    return graph


def with_fc_weights(graph: Graph, values: np.ndarray, dtype: IntType) -> Graph:
    return graph.replace_node("fc", Linear(weight=IntTensor(values, dtype)))


def branching(graph: Graph) -> Graph:
    nodes = dict(graph.nodes)
    nodes["extra"] = graph.nodes["lif1"]
    return Graph(nodes, (*graph.edges, ("lif1", "extra")))


def wider_state(graph: Graph) -> Graph:
    state = IntType(32)
    for name, node in graph.nodes.items():
        if isinstance(node, LIF):
            graph = graph.replace_node(
                name,
                dataclasses.replace(
                    node, state=state, threshold=IntTensor(node.threshold.values, state), bias=IntTensor(node.bias.values, state)
                ),
            )
    return graph


def limits(**kw: int) -> Callable[[TargetProfile], TargetProfile]:
    return lambda t: t.with_changes(limits={**t.limits, **kw})


def same(x: Any) -> Any:
    return x


# (rule, graph change, target change, text the message must contain)
VIOLATIONS = [
    ("graph_is_a_chain", branching, same, "feeds 2 nodes"),
    (
        "inputs_fit_target_input_type",
        lambda g: replace_nodes(g, type(g.input), dtype=IntType(16, signed=False)),
        same,
        "input 'input' has type UINT16 [0, 65535], beyond limit UINT8 [0, 255]",
    ),
    (
        "weights_fit_target_weight_type",
        lambda g: with_fc_weights(g, np.full(g.nodes["fc"].weight.shape, -8), IntType(4)),
        same,
        "layer 'fc' has weights in [-8, -8], beyond limit INT4_NARROW [-7, 7]",
    ),
    ("lif_state_matches_target", wider_state, same, "layer 'lif1' has state INT32, limit is the target's INT24"),
    (
        "lif_arithmetic_matches_target",
        lambda g: replace_nodes(g, LIF, rounding="floor"),
        same,
        "layer 'lif1' has rounding 'floor', limit is the target's 'half_up'",
    ),
    ("layer_count_within_limit", same, limits(max_layers=1), "graph has 2 LIF layers > limit 1"),
    ("layer_neurons_within_limit", same, limits(max_neurons_per_layer=10), "layer 'lif1' has 64 neurons > limit 10"),
    ("total_neurons_within_limit", same, limits(max_neurons=69), "graph has 70 neurons > limit 69"),
    ("fan_in_within_limit", same, limits(max_fan_in=63), "layer 'fc' has fan-in 64 > limit 63"),
    (
        "weight_memory_within_limit",
        same,
        limits(max_weight_memory_bits=100),
        "graph has 1680 weight bits (INT4_NARROW) > limit 100",
    ),  # (36 + 384) weights x 4 bits
    ("accumulator_bound_fits", same, lambda t: t.with_changes(accumulator=IntType(12)), "layer 'pool1' has worst-case synaptic sum"),
]


def test_every_rule_is_listed_once_and_covered():
    names = [r.__name__ for r in rules.RULES]
    assert len(set(names)) == len(names)
    assert sorted(names) == sorted(v[0] for v in VIOLATIONS)


def test_fitting_graph_passes_every_rule(fitting):
    report = rules.check_target_report(fitting, TARGET)
    assert [name for name, _ in report] == [r.__name__ for r in rules.RULES]
    assert all(msg is None for _, msg in report), report
    rules.check_target(fitting, TARGET)


@pytest.mark.parametrize(("rule", "graph_change", "target_change", "text"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_rule_fires_with_its_name(fitting, rule, graph_change, target_change, text):
    graph, target = graph_change(fitting), target_change(TARGET)
    with pytest.raises(TargetError) as info:
        getattr(rules, rule)(graph, target)
    assert str(info.value).startswith(f"rule {rule}: ")
    assert text in str(info.value)
    with pytest.raises(TargetError, match=f"rule {rule}: "):
        rules.check_target(graph, target)
    failed = [name for name, msg in rules.check_target_report(graph, target) if msg is not None]
    assert rule in failed


def test_check_target_lists_every_failure(fitting):
    target = TARGET.with_changes(limits={"max_layers": 1, "max_fan_in": 8})
    with pytest.raises(TargetError) as info:
        rules.check_target(fitting, target)
    msg = str(info.value)
    assert "rule layer_count_within_limit:" in msg and "rule fan_in_within_limit:" in msg
    assert "layer 'conv1' has fan-in 9 > limit 8" in msg  # every offending layer is named


def test_missing_limit_is_not_checked(fitting):
    rules.check_target(fitting, TARGET.with_changes(limits={}))


def test_accumulator_bound_is_exact_interval(fitting):
    w = fitting.nodes["conv1"].weight.values  # one input channel of UINT8 pixels, padding 1
    pos = np.where(w > 0, w, 0).reshape(len(w), -1).sum(1)
    neg = np.where(w < 0, w, 0).reshape(len(w), -1).sum(1)
    bounds = intervals(fitting)
    assert bounds["conv1"] == (int((neg * 255).min()), int((pos * 255).max()))
    assert bounds["pool1"] == (4 * bounds["conv1"][0], 4 * bounds["conv1"][1])
    # exactly at the limit passes, one below fails
    hi = max(abs(v) for v in bounds["pool1"])
    bits = int(hi).bit_length() + 1
    rules.accumulator_bound_fits(fitting, TARGET.with_changes(accumulator=IntType(max(bits, 2))))
    tight = IntType(max(bits - 1, 2))
    if hi > tight.max or -hi < tight.min:
        with pytest.raises(TargetError, match="accumulator_bound_fits"):
            rules.accumulator_bound_fits(fitting, TARGET.with_changes(accumulator=tight))


def test_conv_fan_in_counts_channels_and_kernel():
    conv = Conv2d(weight=IntTensor(np.ones((8, 3, 5, 5), np.int64), IntType(4)))
    assert rules.fan_in(conv) == 75
