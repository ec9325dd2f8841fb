"""Bit-accurate integer simulation of a frozen graph.

:func:`simulate` runs one batch and :func:`simulate_split` a whole data set; both are
backed by :mod:`.reference` (plain NumPy, the readable definition) or :mod:`.fast`
(torch + Numba, bit-identical). :mod:`.lif` is the neuron arithmetic both share.
"""

from qsnn_deploy.sim.simulator import BACKENDS, LayerStats, SimResult, SplitReport, simulate, simulate_split

__all__ = ["BACKENDS", "LayerStats", "SimResult", "SplitReport", "simulate", "simulate_split"]
