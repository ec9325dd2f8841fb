"""Small current-based (Xylo) graphs for tests: Input -> (Linear -> CubaLIF)+ -> Output."""

from __future__ import annotations

import numpy as np

from qsnn_deploy.ir import CubaLIF, Graph, Input, IntTensor, Linear, Output
from qsnn_deploy.ir.dtypes import IntType

INT8, INT16 = IntType(8), IntType(16)


def cuba_graph(
    sizes: list[int],
    rng: np.random.Generator,
    *,
    weight_range: int = 127,
    shifts: tuple[int, int, int] = (4, 4, 4),
    dash_range: tuple[int, int] = (0, 15),
    threshold_range: tuple[int, int] = (1, 4000),
    bias_range: int = 0,
    input_type: IntType = IntType(8, signed=False),
    input_cap: int = 15,
    spike_cap: int = 31,
) -> Graph:
    """A random chain: sizes = [inputs, hidden 1, ..., hidden k, outputs] (k >= 1), Xylo's hop delays.

    ``shifts`` = (input, recurrent, readout) weight shifts, one per Xylo population.
    """
    nodes: list = [("in", Input(shape=(sizes[0],), dtype=input_type, encoding="frames"))]
    layers = len(sizes) - 1
    for k in range(layers):
        n_pre, n = sizes[k], sizes[k + 1]
        last = k == layers - 1
        w = rng.integers(-weight_range, weight_range + 1, size=(n, n_pre))
        nodes.append((f"fc{k + 1}", Linear(weight=IntTensor(w, INT8))))
        dash = lambda: IntTensor(rng.integers(dash_range[0], dash_range[1] + 1, size=n), IntType(8, signed=False))  # noqa: E731
        node = CubaLIF(
            threshold=IntTensor(rng.integers(threshold_range[0], threshold_range[1] + 1, size=n), INT16),
            bias=IntTensor(rng.integers(-bias_range, bias_range + 1, size=n), INT16),
            dash_syn=dash(),
            dash_mem=dash(),
            weight_shift=shifts[0] if k == 0 else (shifts[2] if last else shifts[1]),
            input_cap=input_cap if k == 0 else spike_cap,
            input_delay=0 if k == 0 else 1,
            state=INT16,
            synapse_state=INT16,
            spike_cap=1 if last else spike_cap,
        )
        nodes.append((f"lif{k + 1}", node))
    nodes.append(("out", Output()))
    return Graph.sequential(nodes)
