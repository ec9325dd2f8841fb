r"""Time loop for chains of current-based neurons (Xylo): Input -> (Linear -> CubaLIF)+ -> Output.

Per step t (one call of :func:`chain_step`, driven by :func:`qsnn_deploy.sim.driver.run_steps`
like every other time loop), in chain order, each layer k receives the event counts x_k[t]: the Input's frame
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
from qsnn_deploy.sim.driver import run_steps


class CubaRun(NamedTuple):
    """What one batch through a CubaLIF chain gives (recordings are (T, B, C) int64 when asked)."""

    output_counts: np.ndarray  # (B, C_out) spikes of the last layer summed over T
    neuron_counts: dict[str, np.ndarray]  # layer -> (B, C) spikes summed over T
    saturations: dict[str, int]  # layer -> neuron-steps at which a saturation acted
    synops: dict[str, int]  # layer -> events delivered x the layer's neurons, over steps and samples
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


class ChainState(NamedTuple):
    """State of the whole chain between steps: each layer's neurons and last spikes, the last input."""

    neurons: tuple[lif.CubaState, ...]
    spikes: tuple[np.ndarray, ...]  # S[t-1] of every layer: what a delayed hop delivers now
    x: np.ndarray  # x[t-1], for a first layer with input_delay 1


def chain_step(x: np.ndarray, state: ChainState, params: list[tuple[CubaLIF, lif.CubaParams]]) -> tuple[tuple, ChainState]:
    """One step of the whole chain: each layer hears its predecessor's spikes of this step, or of the last one (input_delay 1).

    Returns ((every layer's spikes, every layer's events heard after its cap), the new state).
    """
    feed, spikes, heard, neurons = x, [], [], []
    for k, (node, p) in enumerate(params):
        if node.input_delay:
            feed = state.spikes[k - 1] if k > 0 else state.x
        heard.append(int((np.minimum(feed, p.input_cap) if p.input_cap else feed).sum()))
        s, new = lif.cuba_step(feed, state.neurons[k], p)
        spikes.append(s)
        neurons.append(new)
        feed = s
    return (tuple(spikes), tuple(heard)), ChainState(tuple(neurons), tuple(spikes), np.asarray(x))


def run(graph: Graph, x: np.ndarray, timesteps: int, *, record: bool = False) -> CubaRun:
    """Simulate one batch of a CubaLIF chain step by step (through :func:`~qsnn_deploy.sim.driver.run_steps`).

    Args:
        graph: Input -> (Linear -> CubaLIF)+ -> Output (:func:`cuba_layers`).
        x: integer events, (B, N) for a ``static`` Input or (B, T, N) for ``frames``.
        timesteps: T.
        record: also return every layer's spikes, synaptic currents and membranes at every step.
    """
    layers = cuba_layers(graph)
    x = np.asarray(x, np.int64)
    batch, static = x.shape[0], graph.input.encoding == "static"
    params = [(node, lif.CubaParams.from_nodes(linear, node, name)) for name, linear, node in layers]
    zeros = tuple(np.zeros((batch, len(p.threshold)), np.int64) for _, p in params)
    first = np.zeros_like(x if static else x[:, 0])
    initial = ChainState(tuple(lif.cuba_initial_state(batch, len(z[0])) for z in zeros), zeros, first)
    counts = [np.zeros_like(z) for z in zeros]
    synops = [0] * len(params)
    rec = {key: [np.zeros((timesteps, *z.shape), np.int64) for z in zeros] for key in ("s", "i", "v")} if record else None

    def collect(t: int, out: tuple, state: ChainState) -> None:
        spikes, heard = out
        for k, (_, p) in enumerate(params):
            counts[k] += spikes[k]
            synops[k] += heard[k] * len(p.threshold)  # every event reaches all of the layer's neurons
            if rec is not None:
                rec["s"][k][t], rec["i"][k][t], rec["v"][k][t] = spikes[k], state.neurons[k].i, state.neurons[k].v

    inputs = x if static else x.swapaxes(0, 1)
    final = run_steps(chain_step, inputs, initial, params, timesteps, static=static, sink=collect)
    names = [name for name, _, _ in layers]

    def by_name(arrays: list[np.ndarray] | None) -> dict[str, np.ndarray] | None:
        return None if arrays is None else dict(zip(names, arrays))

    return CubaRun(
        output_counts=counts[-1],
        neuron_counts=dict(zip(names, counts)),
        saturations={n: int(s.saturations.sum()) for n, s in zip(names, final.neurons)},
        synops=dict(zip(names, synops)),
        spikes=by_name(rec and rec["s"]),
        synaptic=by_name(rec and rec["i"]),
        membrane=by_name(rec and rec["v"]),
    )


def _layer_stats(layers: list[tuple[str, Linear, CubaLIF]], out: CubaRun, timesteps: int) -> list:
    """Per-layer statistics of one batch, as the simulator's ``LayerStats``.

    spikes: spike counts summed; synops: events delivered x the layer's neurons; dense MACs:
    inputs x neurons x steps; memory: the weights at their width, two states per neuron
    (synaptic current, membrane), and per neuron a threshold, a bias and two 4-bit dashes.
    """
    from qsnn_deploy.sim.simulator import LayerStats

    batch = len(out.output_counts)
    stats = []
    for name, linear, node in layers:
        neurons, fan_in = linear.weight.shape
        stats.append(
            LayerStats(
                name=name,
                op=f"Linear+{node.op}",
                neurons=neurons,
                spikes=int(out.neuron_counts[name].sum()),
                synops=out.synops[name],
                dense_macs=neurons * fan_in * timesteps * batch,
                saturations=out.saturations[name],
                weight_bits=neurons * fan_in * linear.weight.dtype.bits,
                state_bits=neurons * (node.state.bits + node.synapse_state.bits),
                param_bits=neurons * (2 * node.state.bits + 8),  # threshold, bias, two 4-bit dashes
            )
        )
    return stats


def simulate(graph: Graph, x: np.ndarray, timesteps: int, *, record: bool = False):
    """One batch as the simulator's ``SimResult`` (``qsnn_deploy.sim.simulate`` calls this for CubaLIF graphs)."""
    from qsnn_deploy.sim.simulator import SimResult

    layers = cuba_layers(graph)
    out = run(graph, x, timesteps, record=record)
    return SimResult(
        counts=out.output_counts,
        predictions=np.argmax(out.output_counts, axis=1),  # first maximum: the lowest index wins ties
        layers=_layer_stats(layers, out, timesteps),
        layer_spike_counts={n: c.sum(axis=1) for n, c in out.neuron_counts.items()},
        spikes=None if out.spikes is None else {n: s.astype(np.uint8) for n, s in out.spikes.items()},  # counts <= 255
        backend="cuba",
    )


__all__ = ["ChainState", "CubaRun", "chain_step", "cuba_layers", "is_current_based", "run", "simulate"]
