r"""``sg-cvx`` on a surrogate-trained conv QSNN: refit its readout convexly on the deployed integer features.

The conv QSNN (:mod:`qsnn_deploy.training.model`) ends in one dense layer ``fc`` from the last
conv LIF's spikes to the class LIF, whose spike counts are the scores. Here that layer and its
spiking class neurons are replaced by a non-spiking readout (:mod:`qsnn_deploy.passes.readout`)::

    scores = 2^F W c + T B        c: per-neuron spike counts over T of the LIF feeding fc

1. **Features.** The frozen model (``--target``'s integer graph) is cut after that LIF
   (:func:`qsnn_deploy.passes.prefix.prefix`) and simulated on every training and test image:
   the features are the deployed graph's, bit for bit. They are cached in the run folder
   (``features.npz``, keyed by the digest of the cut graph).
2. **Convex readout.** The problem of :mod:`.problem` on the standardised counts (:class:`Standardized`; loss, group or l1 penalty,
   a strength path), on the training split less the validation split the QAT trainer held out
   (the base checkpoint's ``val_fraction`` and ``seed``); the strength is picked on validation
   by the accuracy of the quantized readout, so the pick is what is deployed.
3. **Quantization** (:func:`quantize_readout`): W to the target's weight type with one scale,
   the largest |w| mapped to the type's maximum times a clip factor chosen on validation (larger
   factors clip the few largest weights and resolve the rest better); F is the largest input
   shift for which the score bound fits the state, B = round(2^F s b / T).

The test split is simulated for the final report only. The run folder holds ``best.pt``
(:mod:`.conv_checkpoint`), ``metrics.json``, ``path.png`` and ``features.npz``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qsnn_deploy.atomic import atomic_path, write_text_atomic
from qsnn_deploy.errors import QsnnError, TargetError
from qsnn_deploy.training.convex import problem
from qsnn_deploy.training.convex.conv_checkpoint import summed_scores

#: clip factors tried for the readout's weight scale (1: the largest |w| is exactly the type's maximum)
CLIP_FACTORS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)


@dataclass(frozen=True)
class ConvRefit:
    """What an ``sg-cvx`` refit of a conv checkpoint does (CLI options map onto these fields)."""

    init: str  # the surrogate-trained conv checkpoint
    target: str = "int4-core"
    loss: str = "softmax"
    penalty: str = "group"
    solver: str = "fista"
    strengths: int = 8
    ratio: float = 1e-3  # the path runs from just below lambda_max down to ratio * lambda_max
    max_iter: int = 300  # FISTA iterations per strength (warm-started along the path; metrics.json has each certificate)
    limit_train: int | None = None
    limit_test: int | None = None
    batch_size: int = 500
    backend: str = "auto"


@dataclass(frozen=True)
class IntReadout:
    """The deployed readout: integer W (C, P) and per-step B (C,), input shift F, and how they were scaled."""

    weight: np.ndarray
    bias: np.ndarray
    input_shift: int
    scale: float  # integer units per unit of the float readout on raw counts (before the 2^F)
    clip: float

    def scores(self, counts: np.ndarray, timesteps: int) -> np.ndarray:
        """The readout membrane after T steps: 2^F W c + T B (what the simulator's Output returns)."""
        return summed_scores(counts, self.weight, self.bias, self.input_shift, timesteps)


@dataclass(frozen=True)
class Standardized:
    """The solver's features (c - mu) / sd (sd 1 for a constant feature), and the way back to counts.

    Spike counts of neighbouring neurons are strongly correlated and mostly small; centred and
    scaled they condition the problem far better (FISTA converges in a fraction of the steps).
    The data term is the same function of the readout on counts, w = w' / sd and b = b' - w' . mu / sd;
    the penalty becomes sum_p sd_p ||w_p||, a group lasso weighted by each neuron's spread.
    """

    mu: np.ndarray
    sd: np.ndarray

    @classmethod
    def of(cls, counts: np.ndarray) -> Standardized:
        mu, sd = counts.mean(axis=0), counts.std(axis=0)
        return cls(mu, np.where(sd > 0, sd, 1.0))

    def apply(self, counts: np.ndarray) -> np.ndarray:
        return (counts - self.mu) / self.sd

    def to_counts(self, r: problem.Readout) -> problem.Readout:
        w = r.weight / self.sd
        return dataclasses.replace(r, weight=w, bias=r.bias - w @ self.mu)


def quantize_at(readout: problem.Readout, timesteps: int, clip: float, weight_type: Any, state: Any) -> IntReadout:
    """W, B in integers at clip factor ``clip`` (``readout`` on spike counts); F as large as the state allows."""
    from qsnn_deploy.analysis.bounds import readout_score_bound

    w_raw = readout.weight  # per spike count (see :class:`Standardized`)
    top = float(np.abs(w_raw).max())
    if top == 0.0:  # every feature pruned: nothing to scale (the path never picks such a readout)
        return IntReadout(np.zeros(w_raw.shape, np.int64), np.zeros(len(readout.bias), np.int64), 0, 0.0, clip)
    scale = clip * weight_type.max / top
    w = np.clip(np.rint(w_raw * scale), weight_type.min, weight_type.max).astype(np.int64)
    for shift in range(state.bits - 1, -1, -1):
        b = np.rint(readout.bias * scale * 2.0**shift / timesteps).astype(np.int64)  # added at each of T steps
        if readout_score_bound(w, b, shift, timesteps) < state.max:
            return IntReadout(w, b, shift, scale, clip)
    raise TargetError(f"the readout's scores exceed the state type {state.name} even at input shift 0")


def quantize_readout(
    readout: problem.Readout, timesteps: int, weight_type: Any, state: Any, counts_val: np.ndarray, y_val: np.ndarray
) -> tuple[IntReadout, float]:
    """The clip factor of :data:`CLIP_FACTORS` whose integer readout is most accurate on validation; (readout, accuracy)."""
    best: tuple[float, IntReadout] | None = None
    for clip in CLIP_FACTORS:
        q = quantize_at(readout, timesteps, clip, weight_type, state)
        acc = float((np.argmax(q.scores(counts_val, timesteps), axis=1) == y_val).mean())
        if best is None or acc > best[0] + 1e-12:  # ties: the smaller clip
            best = (acc, q)
    return best[1], best[0]


def feature_layer(graph: Any) -> str:
    """The LIF whose spikes feed the graph's last Linear layer (the readout's features)."""
    from qsnn_deploy.ir import LIF, Linear

    last_lif, feature = None, None
    for name, node in graph.chain():
        if isinstance(node, Linear):
            feature = last_lif
            if feature is None:
                raise TargetError("the graph's dense layer reads the input directly: no spiking features to refit a readout on")
        if isinstance(node, LIF):
            last_lif = name
    if feature is None:
        raise TargetError("the graph has no Linear layer: no readout to refit")
    return feature


def simulated_features(
    graph: Any, splits: dict[str, Any], cache: Path, timesteps: int, run: ConvRefit, progress: bool
) -> dict[str, np.ndarray]:
    """Per-neuron spike counts (N, P) of the cut ``graph`` on every split, from ``cache`` if it holds these."""
    from qsnn_deploy.sim.simulator import simulate_split

    digest = hashlib.sha256(json.dumps(graph.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
    sizes = {k: len(s) for k, s in splits.items()}
    if cache.is_file():
        with np.load(cache) as z:
            if str(z["digest"]) == digest and all(k in z and len(z[k]) == n for k, n in sizes.items()):
                return {k: z[k] for k in splits}
    out = {}
    for name, split in splits.items():
        rep = simulate_split(graph, split.x, split.y, timesteps, batch_size=run.batch_size, backend=run.backend, progress=progress)
        out[name] = rep.counts.astype(np.uint16 if rep.counts.max() < 2**16 else np.int64)
    with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, digest=np.array(digest), **out)
    return out


def _load_data(base: Any, run: ConvRefit, data_dir: Any) -> tuple[Any, Any, Any, dict[str, Any]]:
    from qsnn_deploy.data.loaders import load_split, train_val_split

    tcfg = base.train_config
    if tcfg is None or not 0.0 < tcfg.val_fraction < 1.0:
        raise QsnnError("sg-cvx picks the readout on the base run's validation split; the checkpoint records none (no train_config)")
    t = base.model_config.timesteps
    full = load_split(tcfg.dataset, "train", data_dir=data_dir, timesteps=t, limit=run.limit_train, seed=tcfg.seed)
    fit, val = train_val_split(full, tcfg.val_fraction, tcfg.seed)
    test = load_split(tcfg.dataset, "test", data_dir=data_dir, timesteps=t, limit=run.limit_test, seed=tcfg.seed)
    return fit, val, test, {"dataset": tcfg.dataset, "val_fraction": tcfg.val_fraction, "seed": tcfg.seed}


def refit(run: ConvRefit, out_dir: str | Path, *, data_dir: Any = None, progress: bool = True) -> dict[str, Any]:
    """Refit the readout of ``run.init`` (see the module docstring), write the run folder, return the final metrics."""
    from qsnn_deploy.frontends.torch_qat import freeze
    from qsnn_deploy.passes.prefix import prefix
    from qsnn_deploy.targets import load_target
    from qsnn_deploy.training.checkpoint import build_model, load_checkpoint
    from qsnn_deploy.training.convex.conv_checkpoint import ConvReadoutModel, save_conv_readout

    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = load_checkpoint(run.init)
    if base.model_config.kind != "conv":
        raise TargetError(f"sg-cvx refits the readout of a conv QSNN; {run.init} is a {base.model_config.kind!r} model")
    target = load_target(run.target)
    graph = freeze(build_model(base), target)
    layer, t = feature_layer(graph), base.model_config.timesteps
    fit, val, test, split_info = _load_data(base, run, data_dir)
    feats = simulated_features(prefix(graph, layer), {"fit": fit, "val": val, "test": test}, out / "features.npz", t, run, progress)
    state, w_type = graph.nodes[layer].state, target.weight

    std = Standardized.of(feats["fit"])

    def deployed_accuracy(readout: problem.Readout, phi_val: np.ndarray, y_val: np.ndarray) -> float:
        acc = quantize_readout(std.to_counts(readout), t, w_type, state, feats["val"], y_val)[1]
        if progress:
            from tqdm import tqdm

            tqdm.write(
                f"strength {readout.lam:.3g}: integer validation accuracy {acc:.4f}, {int(readout.active().sum())} features, "
                f"{readout.certificate} {readout.certificate_value:.2g} after {readout.iterations} iterations ({readout.seconds:.0f} s)"
            )
        return acc

    path = problem.fit_path(
        std.apply(feats["fit"]), fit.y, std.apply(feats["val"]), val.y, fit.num_classes,
        loss=run.loss, penalty=run.penalty, strengths=run.strengths, ratio=run.ratio, solver=run.solver,
        evaluate=deployed_accuracy, max_iter=run.max_iter,
    )  # fmt: skip
    best = std.to_counts(path.best)
    q, val_acc = quantize_readout(best, t, w_type, state, feats["val"], val.y)
    metrics = _metrics(path, best, q, feats, fit, val, test, t, base)
    metrics.update(
        method="sg-cvx", loss=run.loss, penalty=run.penalty, feature_layer=layer, target=target.name, val_acc=val_acc, split=split_info,
        run=dataclasses.asdict(run), seconds=time.perf_counter() - start,
    )  # fmt: skip
    model = ConvReadoutModel(base, layer, q.weight, q.bias, q.input_shift, target.name, metrics)
    save_conv_readout(model, out / "best.pt")
    write_text_atomic(out / "metrics.json", json.dumps([metrics], indent=1, default=float) + "\n")
    from qsnn_deploy.training.convex.methods import _plots

    _plots(out, path, [])
    return metrics


def _metrics(
    path: problem.PathResult,
    best: problem.Readout,
    q: IntReadout,
    feats: dict[str, np.ndarray],
    fit: Any,
    val: Any,
    test: Any,
    t: int,
    base: Any,
) -> dict[str, Any]:
    def float_acc(f: np.ndarray, y: np.ndarray) -> float:
        return float((np.argmax(best.scores(f), axis=1) == y).mean())

    def int_acc(f: np.ndarray, y: np.ndarray) -> float:
        return float((np.argmax(q.scores(f, t), axis=1) == y).mean())

    return {
        "test_acc": int_acc(feats["test"], test.y),
        "float_test_acc": float_acc(feats["test"], test.y),
        "float_val_acc": float_acc(feats["val"], val.y),
        "fit_acc": int_acc(feats["fit"], fit.y),
        "base_test_acc": base.metrics.get("test_acc"),
        "features": int(feats["fit"].shape[1]),
        "active_features": int((np.abs(q.weight).sum(axis=0) > 0).sum()),
        "lam": best.lam,
        "solver": best.solver,
        "certificate": best.certificate,
        "certificate_value": best.certificate_value,
        "input_shift": q.input_shift,
        "clip": q.clip,
        "weight_range": [int(q.weight.min()), int(q.weight.max())],
        "path": path.table(),
        "samples": {"fit": len(fit), "val": len(val), "test": len(test)},
    }


__all__ = ["CLIP_FACTORS", "ConvRefit", "IntReadout", "feature_layer", "quantize_at", "quantize_readout", "refit", "simulated_features"]
