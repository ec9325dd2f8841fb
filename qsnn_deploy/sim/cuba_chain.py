r"""Time loop for chains of current-based neurons (Xylo): Input -> (Linear -> CubaLIF)+ -> Output.

Per step t, in chain order, each layer k receives the event counts x_k[t]: the Input's frame
(``frames``) or sample (``static``) for the first layer, and for a later layer its
predecessor's spike counts of step t - ``input_delay`` (one step later on Xylo: every hop
between neuron populations costs a step). Then :func:`~qsnn_deploy.sim.lif.cuba_step` runs
the layer. The Output counts the last layer's spikes over the T steps.

This driver is separate from :mod:`qsnn_deploy.sim.reference` because a CubaLIF reads its
Linear's weights itself (the synaptic current saturates after each event, so the synaptic
sum alone does not determine it); it is exact int64 arithmetic like the reference.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from qsnn_deploy.errors import GraphError
from qsnn_deploy.ir import CubaLIF, Graph, Input, Linear, Output
from qsnn_deploy.sim import lif


class CubaRun(NamedTuple):
    """What one batch through a CubaLIF chain gives (recordings are (T, B, C) int64 when asked)."""

    output_counts: np.ndarray  # (B, C_out) spikes of the last layer summed over T
    neuron_counts: dict[str, np.ndarray]  # layer -> (B, C) spikes summed over T
    saturations: dict[str, int]  # layer -> neuron-steps at which a saturation acted
    spikes: dict[str, np.ndarray] | None  # layer -> S[t]
    synaptic: dict[str, np.ndarray] | None  # layer -> I[t]
    membrane: dict[str, np.ndarray] | None  # layer -> V[t]


def cuba_layers(graph: Graph) -> list[tuple[str, Linear, CubaLIF]]:
    """The (name, Linear, CubaLIF) pairs of a chain Input -> (Linear -> CubaLIF)+ -> Output.

    Raises:
        GraphError: the graph is not such a chain, or its first layer has an input delay.
    """
    chain = graph.chain()
    body = chain[1:-1]
    kinds_ok = isinstance(chain[0][1], Input) and isinstance(chain[-1][1], Output) and len(body) % 2 == 0 and body
    pairs = [(body[k], body[k + 1]) for k in range(0, len(body), 2)]
    if not kinds_ok or not all(isinstance(a[1], Linear) and isinstance(b[1], CubaLIF) for a, b in pairs):
        ops = " -> ".join(type(n).__name__ for _, n in chain)
        raise GraphError(f"a current-based graph must be Input -> (Linear -> CubaLIF)+ -> Output, got {ops}")
    if len(graph.input.shape) != 1:
        raise GraphError(f"a current-based graph needs a vector input (N,), got {graph.input.shape}")
    return [(b[0], a[1], b[1]) for a, b in pairs]


def is_current_based(graph: Graph) -> bool:
    """True if the graph has CubaLIF neurons (and so runs through :func:`run`)."""
    return any(isinstance(n, CubaLIF) for n in graph.nodes.values())


def run(graph: Graph, x: np.ndarray, timesteps: int, *, record: bool = False) -> CubaRun:
    """Simulate one batch of a CubaLIF chain step by step.

    Args:
        graph: Input -> (Linear -> CubaLIF)+ -> Output (:func:`cuba_layers`).
        x: integer events, (B, N) for a ``static`` Input or (B, T, N) for ``frames``.
        timesteps: T.
        record: also return every layer's spikes, synaptic currents and membranes at every step.
    """
    layers = cuba_layers(graph)
    x = np.asarray(x, np.int64)
    batch, static = x.shape[0], graph.input.encoding == "static"
    params = [lif.CubaParams.from_nodes(linear, node, name) for name, linear, node in layers]
    states = [lif.cuba_initial_state(batch, len(p.threshold)) for p in params]
    last = [np.zeros((batch, len(p.threshold)), np.int64) for p in params]  # spikes of step t-1
    counts = [np.zeros_like(s) for s in last]
    rec = {key: [np.zeros((timesteps, *s.shape), np.int64) for s in last] for key in ("s", "i", "v")} if record else None
    for t in range(timesteps):
        feed = x if static else x[:, t]
        previous = list(last)
        for k, ((_, _, node), p) in enumerate(zip(layers, params)):
            if k > 0:
                feed = previous[k - 1] if node.input_delay else last[k - 1]
            elif node.input_delay:
                feed = np.zeros_like(feed) if t == 0 else (x if static else x[:, t - 1])
            last[k], states[k] = lif.cuba_step(feed, states[k], p)
            counts[k] += last[k]
            if rec is not None:
                rec["s"][k][t], rec["i"][k][t], rec["v"][k][t] = last[k], states[k].i, states[k].v
    names = [name for name, _, _ in layers]

    def by_name(arrays: list[np.ndarray] | None) -> dict[str, np.ndarray] | None:
        return None if arrays is None else dict(zip(names, arrays))

    return CubaRun(
        output_counts=counts[-1],
        neuron_counts=dict(zip(names, counts)),
        saturations={n: int(s.saturations.sum()) for n, s in zip(names, states)},
        spikes=by_name(rec and rec["s"]),
        synaptic=by_name(rec and rec["i"]),
        membrane=by_name(rec and rec["v"]),
    )


__all__ = ["CubaRun", "cuba_layers", "is_current_based", "run"]
