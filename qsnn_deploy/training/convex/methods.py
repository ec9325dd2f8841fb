"""The training methods behind ``qsnn-deploy train --method``, and the run folder they write.

- ``cvx``: Gaussian witnesses, convex readout (strength chosen on the validation split);
- ``sg-cvx``: surrogate-train the stacks, round them, refit the readout convexly on their features;
- ``cvx-sg``: the ``cvx`` solution as initialisation, then surrogate fine-tuning of everything
  (kept only if it beats the ``cvx`` solution on validation, as ``train --finetune`` does;
  ``metrics.json``'s ``kept`` says which);
- ``sg``: surrogate training alone; on a sequence task the stacks' trainer here, on image data
  the QAT trainer (:mod:`qsnn_deploy.training.trainer`, which the CLI calls directly).

Every method ends with an integer model (:class:`~.checkpoint.StackModel`) whose predictions are
the deployed graph's; ``test_acc`` is its accuracy. The run folder holds ``best.pt``,
``metrics.json`` (a list of rows, the last the final model's), ``path.png`` (the strength path)
and, after surrogate training, ``accuracy.png``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qsnn_deploy.atomic import atomic_path, write_text_atomic
from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.convex import problem
from qsnn_deploy.training.convex.checkpoint import StackModel, save_stack
from qsnn_deploy.training.convex.model import StackConfig, StackWeights, check_state_bound, gaussian_witnesses, integer_features

METHODS: dict[str, str] = {
    "sg": "surrogate gradients only (the QAT trainer on image data)",
    "cvx": "Gaussian witnesses + convex readout",
    "sg-cvx": "surrogate-trained stacks, readout refit convexly",
    "cvx-sg": "convex solution, then surrogate fine-tuning",
}
#: the data sets the stack methods train on (image data sets go to the QAT trainer)
SEQUENCE_DATA = ("first-last-xor", "base-addition", "seq-fmnist")


@dataclass(frozen=True)
class ConvexRun:
    """What a stack-method run trains on and how (CLI options map onto these fields)."""

    method: str = "cvx"
    data: str = "first-last-xor"
    timesteps: int = 6
    stacks: int = 128
    widths: tuple[int, ...] = (4, 4)
    features: str = "last"
    reset: str = "subtract"
    loss: str = "squared"
    penalty: str = "group"
    solver: str = "auto"
    strengths: int = 5
    epochs: int = 20
    lr: float = 0.01
    batch_size: int = 128
    val_fraction: float = 0.2
    seed: int = 0
    limit_train: int | None = None
    limit_test: int | None = None


def uses_stack_methods(method: str, data: str | None) -> bool:
    """True when ``method`` on ``data`` runs here (False: the QAT trainer's ``sg``)."""
    if method not in METHODS:
        raise QsnnError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return method != "sg" or data in SEQUENCE_DATA


def stack_config(run: ConvexRun, train: Any) -> StackConfig:
    """The stacks for a task: input width, value range and typical active inputs from its data."""
    x = train.x.reshape(len(train), train.x.shape[1], -1)
    return StackConfig(
        input_size=x.shape[2],
        num_classes=train.num_classes,
        timesteps=run.timesteps,
        stacks=run.stacks,
        widths=tuple(run.widths),
        reset=run.reset,
        features=run.features,
        input_active=max(1, round(float((x > 0).sum(axis=2).mean()))),
        input_max=int(max(1, x.max())),
        seed=run.seed,
    )


def _load(run: ConvexRun, data_dir: Any):
    from qsnn_deploy.data.loaders import load_split, train_val_split

    train = load_split(run.data, "train", data_dir=data_dir, timesteps=run.timesteps, limit=run.limit_train, seed=run.seed)
    test = load_split(run.data, "test", data_dir=data_dir, timesteps=run.timesteps, limit=run.limit_test, seed=run.seed)
    fit, val = train_val_split(train, run.val_fraction, run.seed)
    return fit, val, test


def convex_readout(
    run: ConvexRun, cfg: StackConfig, hidden: StackWeights, fit: Any, val: Any
) -> tuple[np.ndarray, np.ndarray, problem.PathResult]:
    """Solve the strength path on the hidden net's integer features; the pick is the quantized readout's best."""
    phi, phi_val = integer_features(cfg, hidden, fit.x), integer_features(cfg, hidden, val.x)

    def deployed_accuracy(readout: problem.Readout, f: np.ndarray, y: np.ndarray) -> float:
        w, b = problem.quantize(readout, cfg.readout_bits, readout.active(), cfg.bias_steps)
        return float((problem.integer_predictions(f, w, cfg.bias_steps * b) == y).mean())

    path = problem.fit_path(
        phi,
        fit.y,
        phi_val,
        val.y,
        cfg.num_classes,
        loss=run.loss,
        penalty=run.penalty,
        strengths=run.strengths,
        solver=run.solver,
        evaluate=deployed_accuracy,
    )
    w, b = problem.quantize(path.best, cfg.readout_bits, path.best.active(), cfg.bias_steps)
    return w, b, path


def run_method(run: ConvexRun, out_dir: str | Path, *, data_dir: Any = None, progress: bool = True) -> dict[str, Any]:
    """Train with ``run.method``, write the run folder, return the final metrics row."""
    from qsnn_deploy.training.convex.surrogate import train_surrogate

    if not uses_stack_methods(run.method, run.data):
        raise QsnnError(f"method {run.method!r} on {run.data!r} is the QAT trainer's, not a stack method")
    if run.data not in SEQUENCE_DATA:
        raise QsnnError(f"the stack methods train on the sequence tasks {', '.join(SEQUENCE_DATA)}, not {run.data!r}")
    if run.epochs < 1 and run.method != "cvx":
        raise QsnnError("surrogate training needs --epochs >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    fit, val, test = _load(run, data_dir)
    cfg = stack_config(run, fit)
    hidden = gaussian_witnesses(cfg)
    rows: list[dict[str, Any]] = []
    path = None
    sg_history: list[dict[str, Any]] = []
    if run.method in ("cvx", "cvx-sg"):
        w, b, path = convex_readout(run, cfg, hidden, fit, val)
        rows.append(_row("cvx", cfg, hidden, w, b, val, test, path, start))
        convex_model = (hidden, w, b)
    if run.method in ("sg", "sg-cvx", "cvx-sg"):
        init = (path.best.weight, path.best.bias) if run.method == "cvx-sg" and path is not None else None
        sg = train_surrogate(
            cfg, hidden, fit, val, epochs=run.epochs, lr=run.lr, batch_size=run.batch_size, readout=init, progress=progress
        )
        hidden, sg_history = sg.hidden, sg.history
        if run.method == "sg-cvx":
            w, b, path = convex_readout(run, cfg, hidden, fit, val)
        else:  # the surrogate's own float readout, quantized
            readout = problem.Readout(sg.readout[0], sg.readout[1], 0.0, float("nan"), "adam", "none", float("nan"), run.epochs, 0.0)
            w, b = problem.quantize(readout, cfg.readout_bits, bias_steps=cfg.bias_steps)
        rows.append(_row(run.method, cfg, hidden, w, b, val, test, path if run.method == "sg-cvx" else None, start))
    kept = run.method
    if run.method == "cvx-sg" and rows[-1]["val_acc"] < rows[0]["val_acc"]:
        # as the QAT fine-tune: the result replaces its starting point only if it is better on validation
        hidden, w, b = convex_model
        kept = "cvx"
    check_state_bound(cfg, hidden)
    final_row = rows[0] if kept == "cvx" and run.method == "cvx-sg" else rows[-1]
    final = {**final_row, "method": run.method, "kept": kept, "run": _jsonable(dataclasses.asdict(run)), "surrogate_epochs": sg_history}
    model = StackModel(cfg, hidden, w, b, run.data, run.method, final)
    save_stack(model, out / "best.pt")
    stages = rows if final_row is not rows[-1] else rows[:-1]  # every stage's row, then the final model's
    write_text_atomic(out / "metrics.json", json.dumps([*stages, final], indent=1, default=float) + "\n")
    _plots(out, path, sg_history)
    return final


def _row(
    stage: str, cfg: StackConfig, hidden: StackWeights, w: np.ndarray, b: np.ndarray, val: Any, test: Any, path: Any, start: float
) -> dict[str, Any]:
    model = StackModel(cfg, hidden, w, b)
    row: dict[str, Any] = {
        "stage": stage,
        "val_acc": float((model.predict(val.x) == val.y).mean()),
        "test_acc": float((model.predict(test.x) == test.y).mean()),
        "features": cfg.feature_count,
        "active_features": int((np.abs(w).sum(axis=0) > 0).sum()),
        "seconds": time.perf_counter() - start,
    }
    if path is not None:
        best = path.best
        row.update(
            lam=best.lam,
            solver=best.solver,
            certificate=best.certificate,
            certificate_value=best.certificate_value,
            float_val_acc=float((np.argmax(best.scores(integer_features(cfg, hidden, val.x)), axis=1) == val.y).mean()),
            path=path.table(),
        )
    return row


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _plots(out: Path, path: Any, sg_history: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if path is not None:
        pts = path.points
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.semilogx([p.lam for p in pts], [100 * p.val_acc for p in pts], marker="o", label="validation accuracy (%)")
        ax2 = ax.twinx()
        ax2.semilogx([p.lam for p in pts], [p.active for p in pts], marker="s", color="C1", label="active feature neurons")
        ax.set(xlabel="regularisation strength", ylabel="validation accuracy (%)", title="Convex readout: strength path")
        ax2.set_ylabel("active feature neurons")
        _save(fig, out / "path.png")
        plt.close(fig)
    if sg_history:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([h["epoch"] for h in sg_history], [100 * h["val_acc"] for h in sg_history], marker="o", label="validation")
        ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Surrogate training")
        ax.legend()
        _save(fig, out / "accuracy.png")
        plt.close(fig)


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


__all__ = ["METHODS", "SEQUENCE_DATA", "ConvexRun", "run_method", "stack_config", "uses_stack_methods"]
