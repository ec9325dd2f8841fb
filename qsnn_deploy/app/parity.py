"""Parity: the float QAT model against its integer deployment, on the same inputs.

Both run every batch with all spikes recorded; the report gives both accuracies, how often
their predictions agree, per-layer spike totals side by side, the share of samples whose
output spike trains are identical at every step, and the first divergence (the earliest
step, and the layer, where any spike differs) over the samples that diverge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LayerParity:
    name: str
    neurons: int
    spikes_float: int = 0
    spikes_int: int = 0
    equal_neuron_steps: int = 0
    neuron_steps: int = 0

    def to_json(self, stats: Any) -> dict[str, Any]:
        """This layer's comparison, with the integer run's ``LayerStats`` (SynOps, memory, saturations)."""
        return {
            "name": self.name,
            "neurons": self.neurons,
            "spikes_float": self.spikes_float,
            "spikes_int": self.spikes_int,
            "spike_agreement": self.equal_neuron_steps / max(self.neuron_steps, 1),
            "synops": int(stats.synops),
            "memory_bits": int(stats.memory_bits),
            "saturations": int(stats.saturations),
        }


@dataclass
class ParityReport:
    target: str
    timesteps: int
    samples: int = 0
    #: the ``--limit`` asked for (None: the whole split); ``samples`` is what ran
    requested: int | None = None
    float_correct: int = 0
    int_correct: int = 0
    agree: int = 0
    identical_outputs: int = 0
    diverged: int = 0
    first_divergence: tuple[int, int] | None = None  # (step, layer index)
    layers: list[LayerParity] = field(default_factory=list)
    #: the integer run as ``simulate_split`` reports it (so a caller need not simulate twice)
    simulation: Any = None
    #: the graph's Output readout: identical outputs are whole spike trains, or equal scores ("membrane")
    readout: str = "spike_count"

    @property
    def float_accuracy(self) -> float:
        return self.float_correct / max(self.samples, 1)

    @property
    def int_accuracy(self) -> float:
        return self.int_correct / max(self.samples, 1)

    def to_json(self) -> dict[str, Any]:
        layers = [lp.to_json(stats) for lp, stats in zip(self.layers, self.simulation.layers)]
        first = None
        if self.first_divergence is not None:
            step, layer = self.first_divergence
            first = {"step": step, "layer": self.layers[layer].name, "samples_diverged": self.diverged}
        return {
            "target": self.target,
            "timesteps": self.timesteps,
            "samples": self.samples,
            "requested": self.requested,
            "accuracy": self.int_accuracy,
            "float_accuracy": self.float_accuracy,
            "int_accuracy": self.int_accuracy,
            "accuracy_drop_pp": 100 * (self.float_accuracy - self.int_accuracy),
            "prediction_agreement": self.agree / max(self.samples, 1),
            "identical_output_share": self.identical_outputs / max(self.samples, 1),
            "output_readout": self.readout,
            "first_divergence": first,
            "layers": layers,
            "totals": {
                "spikes_float": sum(lp["spikes_float"] for lp in layers),
                "spikes_int": sum(lp["spikes_int"] for lp in layers),
                "synops": sum(lp["synops"] for lp in layers),
                "memory_bytes": math.ceil(sum(lp["memory_bits"] for lp in layers) / 8),
            },
        }


def _compare_batch(
    report: ParityReport,
    lif_names: list[str],
    float_spikes: list[np.ndarray],
    sim: Any,
    y: np.ndarray,
    float_pred: np.ndarray,
    float_scores: np.ndarray | None = None,
) -> None:
    """Add one batch's comparison (accuracy, agreement, per-layer spikes, first divergence) to ``report``.

    ``float_scores`` are the float model's outputs for a membrane readout (its integer scores);
    then an output is identical when the scores are, not the (never-firing) readout's spikes.
    """
    timesteps, batch = report.timesteps, len(y)
    report.samples += batch
    report.float_correct += int((float_pred == y).sum())
    report.int_correct += int((sim.predictions == y).sum())
    report.agree += int((float_pred == sim.predictions).sum())
    first_step = np.full(batch, timesteps, dtype=np.int64)
    first_layer = np.zeros(batch, dtype=np.int64)
    for li, (lp, name) in enumerate(zip(report.layers, lif_names)):
        s_float = float_spikes[li].reshape(timesteps, batch, -1).astype(np.uint8)
        s_int = sim.spikes[name].reshape(timesteps, batch, -1)
        lp.spikes_float += int(s_float.sum())
        lp.spikes_int += int(s_int.sum())
        differ = s_float != s_int
        lp.equal_neuron_steps += int(differ.size - differ.sum())
        lp.neuron_steps += differ.size
        step_differs = differ.any(axis=2)  # (T, B)
        has = step_differs.any(axis=0)
        steps = np.where(has, step_differs.argmax(axis=0), timesteps)
        earlier = steps < first_step
        first_layer[earlier] = li
        first_step = np.minimum(first_step, steps)
        if li == len(lif_names) - 1:
            same = ~has if float_scores is None else (float_scores == sim.counts).all(axis=1)
            report.identical_outputs += int(same.sum())
    diverged = first_step < timesteps
    report.diverged += int(diverged.sum())
    if diverged.any():
        order = np.lexsort((first_layer[diverged], first_step[diverged]))
        cand = (int(first_step[diverged][order[0]]), int(first_layer[diverged][order[0]]))
        if report.first_divergence is None or cand < report.first_divergence:
            report.first_divergence = cand


def run_parity(
    model: Any,
    graph: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    target: Any,
    batch_size: int = 128,
    backend: str = "auto",
    progress: bool = True,
    requested: int | None = None,
) -> ParityReport:
    """Compare ``model`` (float QAT, eval mode) with ``graph`` (its frozen integer graph) on (x, y).

    ``requested`` is the number of samples the user asked for (``--limit``), kept in the report
    so it can say when the split held fewer.
    """
    import torch
    from tqdm import tqdm

    from qsnn_deploy.ir import LIF, CubaLIF
    from qsnn_deploy.sim import SplitReport, simulate
    from qsnn_deploy.training.model import predict

    timesteps = model.config.timesteps
    # every spiking layer in order: LIF nodes, or a current-based model's CubaLIF nodes
    lif_names = [name for name, node in graph.chain() if isinstance(node, (LIF, CubaLIF))]
    shapes = graph.shapes()
    report = ParityReport(target=target.name, timesteps=timesteps, requested=requested, readout=graph.chain()[-1][1].readout)
    report.layers = [LayerParity(n, int(np.prod(shapes[n]))) for n in lif_names]
    model.eval()
    sim_layers: list[Any] | None = None
    predictions: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    batches = range(0, len(y), batch_size)
    for start in tqdm(batches, desc="parity", disable=not progress, unit="batch"):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        with torch.no_grad():
            rec = model(torch.from_numpy(np.ascontiguousarray(xb)), record=True)
        sim = simulate(graph, xb, timesteps, backend=backend, record=True, target=target)
        scores = model.scores(rec) if hasattr(model, "scores") else None  # a membrane readout's float counterpart
        float_pred = predict(rec.spikes[-1]).numpy() if scores is None else scores.argmax(axis=1)
        _compare_batch(report, lif_names, [s.numpy() for s in rec.spikes], sim, yb, float_pred, scores)
        sim_layers = sim.layers if sim_layers is None else [a.merged(b) for a, b in zip(sim_layers, sim.layers)]
        predictions.append(sim.predictions)
        counts.append(sim.counts)
    report.simulation = SplitReport(
        samples=report.samples,
        correct=report.int_correct,
        timesteps=timesteps,
        layers=sim_layers or [],
        predictions=np.concatenate(predictions),
        counts=np.concatenate(counts),
    )
    return report
