"""The chain of a graph up to one LIF layer, read out as per-neuron spike counts.

``prefix(graph, "lif2")`` keeps Input -> ... -> lif2, then Flatten -> Output(spike_count): its
simulated ``counts`` are lif2's spikes over T per neuron (flattened, C-order), exactly the values
the full graph's next synaptic layer sees summed over time. Used to compute the features a
convex readout is refit on (:mod:`qsnn_deploy.training.convex.conv`).
"""

from __future__ import annotations

from qsnn_deploy.errors import GraphError
from qsnn_deploy.ir import LIF, Flatten, Graph, Node, Output


def split_after(graph: Graph, upto: str) -> tuple[list[tuple[str, Node]], list[tuple[str, Node]]]:
    """The chain of ``graph`` cut after its LIF node ``upto``: (Input ... upto, the rest).

    Raises:
        GraphError: ``upto`` is not a LIF node of the chain.
    """
    chain = graph.chain()
    names = [name for name, _ in chain]
    if upto not in names or not isinstance(chain[names.index(upto)][1], LIF):
        raise GraphError(f"{upto!r} is not a LIF layer of the graph (LIF layers: {', '.join(n for n, _ in graph.lif_layers())})")
    cut = names.index(upto) + 1
    return chain[:cut], chain[cut:]


def prefix(graph: Graph, upto: str) -> Graph:
    """The chain of ``graph`` from its Input to the LIF node ``upto``, then Flatten -> Output (spike counts)."""
    kept, _ = split_after(graph, upto)
    taken = {n for n, _ in kept}
    flat = "flatten" if "flatten" not in taken else f"{upto}_flatten"
    out = "output" if "output" not in taken else f"{upto}_output"
    return Graph.sequential([*kept, (flat, Flatten()), (out, Output())], dict(graph.metadata), timesteps=graph.timesteps)


__all__ = ["prefix", "split_after"]
