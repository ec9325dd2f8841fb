"""prune_unread_neurons: before/after runs agree on every kept neuron, on hypothesis-drawn dense chains."""

from __future__ import annotations

import numpy as np
import pytest
from graph_factory import make_graph, random_input
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qsnn_deploy.errors import GraphError
from qsnn_deploy.ir import LIF, Graph, Input, IntTensor, Linear, Output
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.passes.prune import prune_unread_neurons
from qsnn_deploy.sim import simulate

WEIGHT = IntType(4, signed=True, narrow=True)


def dense_chain(seed: int, widths: list[int], *, dead: float, state_bits: int, overflow: str, readout: str, **arith) -> Graph:
    """Input (frames) -> [Linear -> LIF] per width -> Output; a fraction ``dead`` of each weight's columns is zero."""
    rng = np.random.default_rng(seed)
    state = IntType(state_bits)
    nodes: list[tuple[str, object]] = [("input", Input(shape=(widths[0],), dtype=IntType(2, signed=False), encoding="frames"))]
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        w = rng.integers(-7, 8, size=(n_out, n_in))
        if i > 0:  # the input's columns are never pruned; hidden ones are
            w[:, rng.random(n_in) < dead] = 0
        nodes.append((f"fc{i + 1}", Linear(weight=IntTensor(w, WEIGHT))))
        theta = rng.integers(1, 40, size=n_out)
        nodes.append(
            (
                f"lif{i + 1}",
                LIF(
                    threshold=IntTensor(np.minimum(theta, state.max), state),
                    bias=IntTensor(rng.integers(-3, 4, size=n_out), state),
                    decay_mul=int(rng.integers(0, 257)),
                    decay_shift=8,
                    input_shift=int(rng.integers(0, 3)),
                    state=state,
                    overflow=overflow,
                    **arith,
                ),
            )
        )
    nodes.append(("output", Output(readout=readout)))
    return Graph.sequential(nodes, {"seed": seed}, timesteps=7)


def reachable(graph: Graph) -> dict[str, np.ndarray]:
    """Per LIF layer, which neurons have a path of nonzero weights to a neuron of the last LIF (the oracle's definition)."""
    chain = graph.chain()
    lifs = [(i, n) for i, (n, node) in enumerate(chain) if isinstance(node, LIF)]
    keep = {lifs[-1][1]: np.ones(chain[lifs[-1][0]][1].threshold.shape[0], bool)}
    for (_, name), (j, later) in zip(reversed(lifs[:-1]), reversed(lifs[1:])):
        w = chain[j - 1][1].weight.values  # the Linear right before the later LIF reads this layer
        keep[name] = (w[keep[later]] != 0).any(axis=0)
    return keep


arith_strategy = st.fixed_dictionaries(
    {
        "reset": st.sampled_from(["subtract", "zero"]),
        "compare": st.sampled_from(["gt", "ge"]),
        "reset_timing": st.sampled_from(["delayed", "immediate"]),
        "rounding": st.sampled_from(["floor", "half_up"]),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    widths=st.lists(st.integers(2, 9), min_size=3, max_size=5),
    dead=st.floats(0.0, 0.8),
    state_bits=st.sampled_from([6, 8, 24]),  # 6 and 8 bits saturate or wrap often
    overflow=st.sampled_from(["saturate", "wrap"]),
    readout=st.sampled_from(["spike_count", "membrane"]),
    arith=arith_strategy,
)
def test_kept_neurons_run_exactly_as_before(seed, widths, dead, state_bits, overflow, readout, arith) -> None:
    graph = dense_chain(seed, widths, dead=dead, state_bits=state_bits, overflow=overflow, readout=readout, **arith)
    keep = reachable(graph)
    if not all(k.any() for k in keep.values()):
        with pytest.raises(GraphError, match="is unread"):
            prune_unread_neurons(graph)
        return
    pruned = prune_unread_neurons(graph)
    x = np.random.default_rng(seed).integers(0, 4, size=(3, 7, widths[0]))
    before = simulate(graph, x, 7, backend="reference", record=True, trace=True)
    after = simulate(pruned, x, 7, backend="reference", record=True, trace=True)
    assert np.array_equal(before.counts, after.counts)
    for name, kept in keep.items():
        assert pruned.nodes[name].threshold.shape[0] == kept.sum()
        assert np.array_equal(after.spikes[name], before.spikes[name][..., kept])
        assert np.array_equal(after.membranes[name], before.membranes[name][..., kept])
    assert pruned.timesteps == graph.timesteps and dict(pruned.metadata) == dict(graph.metadata)


def test_a_graph_with_nothing_unread_is_returned_equal_and_the_input_is_untouched() -> None:
    graph = dense_chain(3, [5, 6, 4, 3], dead=0.0, state_bits=24, overflow="saturate", readout="spike_count")
    assert prune_unread_neurons(graph).to_dict() == graph.to_dict()
    sparse = dense_chain(3, [5, 6, 4, 3], dead=0.5, state_bits=24, overflow="saturate", readout="spike_count")
    snapshot = sparse.to_dict()
    pruned = prune_unread_neurons(sparse)
    assert sparse.to_dict() == snapshot and pruned.nodes["lif1"].threshold.shape[0] < 6


def test_conv_layers_and_the_output_layer_keep_every_neuron() -> None:
    graph = make_graph(0)
    fc = graph.nodes["fc"]
    zeroed = graph.replace_node("fc", Linear(weight=IntTensor(np.where(np.arange(fc.weight.shape[1]) % 2, fc.weight.values, 0), WEIGHT)))
    pruned = prune_unread_neurons(zeroed)
    assert pruned.to_dict() == zeroed.to_dict()  # lif1 follows a pool, not a Linear: left alone
    x = random_input(zeroed, 2, 0)
    assert np.array_equal(simulate(pruned, x, 5).counts, simulate(zeroed, x, 5).counts)


def test_a_layer_nobody_reads_is_an_error_naming_it() -> None:
    graph = dense_chain(1, [4, 5, 3], dead=0.0, state_bits=24, overflow="saturate", readout="spike_count")
    silent = graph.replace_node("fc2", Linear(weight=IntTensor(np.zeros((3, 5), np.int64), WEIGHT)))
    with pytest.raises(GraphError, match="every neuron of layer 'lif1' is unread: 'fc2' has only zero weights"):
        prune_unread_neurons(silent)
