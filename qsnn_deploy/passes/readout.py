r"""Replace a graph's tail after one LIF layer by a non-spiking linear readout (``Output(readout="membrane")``).

``membrane_readout(graph, "lif2", W, B, F)`` keeps Input -> ... -> lif2 and appends::

    Flatten -> Linear(W) -> LIF(readout: beta = 1, Theta = state max, bias B, input_shift F) -> Output(membrane)

The readout LIF's decay multiplier is 2^k (k its decay shift), so D(V) = V exactly (beta = 1) and its
membrane after T steps is the class score::

    V[T-1] = sum_t ((W S[t]) << F) + B  =  2^F W c + T B         c: lif2's spike counts over T

It never fires (compare ``gt`` against the state's maximum, which a saturating membrane cannot
exceed) and never saturates: the pass checks that the worst case T ((max_c sum_p |W_cp|) << F + max |B|)
fits the state. The weight type is the one of the graph's Linear layer being replaced (the
target's weight type), the state and neuron arithmetic those of ``upto``'s LIF.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qsnn_deploy.analysis.bounds import readout_score_bound
from qsnn_deploy.errors import GraphError, TargetError
from qsnn_deploy.ir import LIF, Flatten, Graph, IntTensor, Linear, Output
from qsnn_deploy.passes.prefix import split_after


def membrane_readout(graph: Graph, upto: str, weight: np.ndarray, bias: np.ndarray, input_shift: int, timesteps: int) -> Graph:
    """``graph`` up to the LIF ``upto``, then the summing readout of the module docstring.

    Raises:
        GraphError: ``upto`` is not a LIF of the chain, or nothing synaptic follows it to take the weight type from,
            or W does not match the feature count.
        TargetError: W beyond the weight type, B beyond the state, or a score bound beyond the state.
    """
    kept, tail = split_after(graph, upto)
    replaced = [node for _, node in tail if isinstance(node, Linear)]
    if not replaced:
        raise GraphError(f"no Linear layer follows {upto!r}: nothing to take the readout's weight type from")
    w_type = replaced[0].weight.dtype
    lif: LIF = kept[-1][1]
    state = lif.state
    w, b = np.asarray(weight, np.int64), np.asarray(bias, np.int64)
    features = int(np.prod(graph.shapes()[upto]))
    if w.ndim != 2 or w.shape[1] != features or b.shape != (w.shape[0],):
        raise GraphError(f"readout weight must be (C, {features}) and bias (C,), got {w.shape} and {b.shape}")
    if not w_type.contains(w):
        raise TargetError(f"readout weights span [{w.min()}, {w.max()}], beyond the weight type {w_type.name}")
    bound = readout_score_bound(w, b, input_shift, timesteps)
    if bound >= state.max:
        raise TargetError(f"readout scores reach {bound:,} in {timesteps} steps, beyond the state type {state.name} (max {state.max:,})")
    scores = dataclasses.replace(
        lif,
        threshold=IntTensor(np.full(len(b), state.max, np.int64), state),  # unreachable: never fires
        bias=IntTensor(b, state),
        decay_mul=2**lif.decay_shift,  # beta = 1: the membrane sums
        input_shift=int(input_shift),
    )
    if {n for n, _ in kept} & {"flatten", "readout", "scores", "output"}:
        raise GraphError(f"the graph up to {upto!r} already has a node named flatten, readout, scores or output")
    readout = Linear(weight=IntTensor(w, w_type))
    nodes = [*kept, ("flatten", Flatten()), ("readout", readout), ("scores", scores), ("output", Output(readout="membrane"))]
    return Graph.sequential(
        nodes, {**graph.metadata, "readout": {"after": upto, "kind": "membrane", "score_bound": bound}}, timesteps=int(timesteps)
    )


__all__ = ["membrane_readout"]
