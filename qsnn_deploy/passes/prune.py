r"""Remove neurons whose spikes nothing reads: a pure pass ``Graph -> Graph``.

Neuron j of a LIF layer whose spikes feed a ``Linear`` is *unread* when column j of that
``Linear``'s weight is zero: its spikes add 0 to every later sum. Removing it deletes row j of the
``Linear`` before the layer, entry j of the layer's ``threshold`` and ``bias``, and column j of the
``Linear`` after it. Layers are visited from the output towards the input, so a neuron whose only
readers were removed is unread in turn.

Every kept neuron sees the same sums at every step, so the output (spike counts or membranes), the
kept neurons' spikes and membranes, and every sum that can overflow are unchanged; the removed
neurons' own saturation or wrap never reached anything. What changes: per-layer statistics (fewer
neurons, fewer SynOps, less memory), and under ``overflow="error"`` a removed neuron can no longer
stop a run. Only ``Linear -> LIF -> Linear`` layers are pruned; the last LIF (read by the Output)
and convolutional layers keep all their neurons.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qsnn_deploy.errors import GraphError
from qsnn_deploy.ir import LIF, Graph, IntTensor, Linear


def _take(tensor: IntTensor, index: np.ndarray, axis: int) -> IntTensor:
    return IntTensor(np.take(tensor.values, index, axis=axis), tensor.dtype)


def prune_unread_neurons(graph: Graph) -> Graph:
    """The graph without the neurons no later node reads (module docstring); a chain graph only.

    Raises:
        GraphError: the graph is not a chain, or every neuron of a layer is unread (the layer's
            reader has an all-zero weight, so the graph's output does not depend on its input).
    """
    chain = graph.chain()
    nodes = dict(chain)
    names = [n for n, _ in chain]
    for i in range(len(names) - 2, 0, -1):
        before, layer, after = names[i - 1], names[i], names[i + 1]
        if not (isinstance(nodes[before], Linear) and type(nodes[layer]) is LIF and isinstance(nodes[after], Linear)):
            continue
        read = np.flatnonzero(np.any(nodes[after].weight.values != 0, axis=0))
        if read.size == nodes[layer].threshold.shape[0]:
            continue
        if read.size == 0:
            raise GraphError(f"every neuron of layer {layer!r} is unread: {after!r} has only zero weights")
        nodes[after] = Linear(weight=_take(nodes[after].weight, read, 1))
        lif = nodes[layer]
        nodes[layer] = dataclasses.replace(lif, threshold=_take(lif.threshold, read, 0), bias=_take(lif.bias, read, 0))
        nodes[before] = Linear(weight=_take(nodes[before].weight, read, 0))
    return Graph(nodes, graph.edges, graph.metadata, graph.timesteps)


__all__ = ["prune_unread_neurons"]
