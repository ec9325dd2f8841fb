"""QAT training of the QSNN with the paper's recipe, resumable across stops.

Recipe (Eshraghian et al. 2022): spike-count MSE loss (snnTorch ``mse_count_loss``, correct
class 80% of steps, others 20%), Adam, an LR schedule stepped every minibatch (see
:mod:`qsnn_deploy.training.schedules`), optional gradient-norm clipping (1.0) and weight clamping to
[-1, 1] after each optimiser step. Early stopping watches a validation split held out of
the training set; the reported test accuracy is the one at the best validation epoch.

Target-aware fine-tuning (``target`` given, usually with ``init_from`` a trained model): the
LIF layers run the target's integer arithmetic (:mod:`qsnn_deploy.training.finetune`), so the loss,
the logged accuracies and the early stopping are those of the integer deployment. The model
runs in eval mode (frozen BatchNorm statistics, no dropout), as the fold requires. Epoch 0 is
the starting model: best.pt changes only if fine-tuning beats it on validation.

Refit (``refit_from`` a run's ``last.pt``): once early stopping has chosen an epoch, the run
branches off at an earlier epoch of the same run and continues, from that epoch's full training
state, on the whole training set (validation split included) up to the chosen epoch. With no
validation there is no early stopping, and ``best.pt`` is the model of the last epoch.

A run directory holds ``last.pt`` (everything needed for ``--resume``: optimiser, schedule,
early-stopping and RNG state, and the logs), ``best.pt`` (the model at the best validation
epoch), ``metrics.csv``/``metrics.json`` (per epoch), ``iterations.csv`` (loss and LR per
iteration), ``train.log`` and PNG plots. Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qsnn_deploy.atomic import write_text_atomic
from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.checkpoint import Checkpoint, model_state, save_checkpoint
from qsnn_deploy.training.config import ModelConfig, TrainConfig
from qsnn_deploy.training.evaluation import EVAL_BATCH, _to_tensor, evaluate  # noqa: F401
from qsnn_deploy.training.restore import Plan, restore


@dataclass
class RunResult:
    out_dir: Path
    epochs_run: int
    best_epoch: int
    best_val_acc: float | None  # None: a refit, which has no validation split
    test_acc_at_best: float
    history: list[dict[str, Any]]
    stopped_early: bool


def _accuracy_text(acc: float | None) -> str:
    return "n/a" if acc is None else f"{acc:.4f}"  # None: a refit has no validation split


def _write_logs(out_dir: Path, history: list[dict[str, Any]], iter_loss: list[float], iter_lr: list[float]) -> None:
    if history:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        write_text_atomic(out_dir / "metrics.csv", buf.getvalue())
    write_text_atomic(out_dir / "metrics.json", json.dumps(history, indent=1) + "\n")
    buf = io.StringIO()
    buf.write("iteration,loss,lr\n")
    for i, (loss, lr) in enumerate(zip(iter_loss, iter_lr)):
        buf.write(f"{i},{loss:.6g},{lr:.6g}\n")
    write_text_atomic(out_dir / "iterations.csv", buf.getvalue())


def _load_data(plan: Plan, data_dir: str | Path | None) -> tuple[Any, Any, Any]:
    """(train, validation or None, test) splits of the run's data set."""
    from qsnn_deploy.data.loaders import load_split, train_val_split

    cfg, tcfg = plan.model_cfg, plan.train_cfg
    full_train = load_split(tcfg.dataset, "train", data_dir=data_dir, timesteps=cfg.timesteps, limit=plan.limit_train, seed=tcfg.seed)
    if tcfg.val_fraction == 0.0:
        train_split, val_split = full_train, None
    else:
        train_split, val_split = train_val_split(full_train, tcfg.val_fraction, tcfg.seed)
    test_split = load_split(tcfg.dataset, "test", data_dir=data_dir, timesteps=cfg.timesteps, limit=plan.limit_test, seed=tcfg.seed)
    if full_train.num_classes != cfg.num_classes:
        raise QsnnError(f"data set {tcfg.dataset} has {full_train.num_classes} classes, the model {cfg.num_classes}")
    return train_split, val_split, test_split


def _initial_state(plan: Plan, init_from: Checkpoint | None, refit_from: Checkpoint | None, iters_per_epoch: int) -> dict[str, Any]:
    """The run's counters and logs: fresh, or those of the checkpoint it continues."""
    state: dict[str, Any] = {
        "epoch": 0,
        "iteration": 0,
        "loss_halvings": 0,
        "best_train_loss": float("inf"),
        "best_val_acc": -1.0,
        "best_epoch": 0,
        "test_acc_at_best": 0.0,
        "bad_epochs": 0,
        "history": [],
        "iter_loss": [],
        "iter_lr": [],
        "wall_seconds": 0.0,
        "limit_train": plan.limit_train,
        "limit_test": plan.limit_test,
        "target": plan.target.to_dict() if plan.target is not None else None,
        "init_from": init_from.source if init_from is not None else None,
        "refit_from": None,
    }
    if plan.prev is not None:
        state.update({k: plan.prev.train_state[k] for k in state if k in plan.prev.train_state})
    if refit_from is not None:
        # The schedule counts iterations, and an epoch of the whole set has more of them:
        # restart the count at the branch epoch's boundary so the LR keeps its phase.
        state.update(
            iteration=state["epoch"] * iters_per_epoch, bad_epochs=0, refit_from={"checkpoint": refit_from.source, "epoch": state["epoch"]}
        )
    return state


class _Run:
    """One run's model, optimiser, data and state, with the steps :func:`train` chains."""

    def __init__(
        self,
        plan: Plan,
        out: Path,
        splits: tuple[Any, Any, Any],
        init_from: Checkpoint | None,
        refit_from: Checkpoint | None,
        progress: bool,
    ):
        import snntorch.functional as SF
        import torch

        from qsnn_deploy.training.finetune_dense import target_arithmetic_for
        from qsnn_deploy.training.model import build_network

        self.plan, self.out, self.progress = plan, out, progress
        self.cfg, self.tcfg, self.target = plan.model_cfg, plan.train_cfg, plan.target
        self.train_split, self.val_split, self.test_split = splits
        self.model = build_network(self.cfg)
        if init_from is not None and plan.prev is None:
            self.model.load_state_dict(init_from.state_dict, strict=False)
        if self.target is not None:
            self.model.target_arithmetic = target_arithmetic_for(self.model, self.target)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.tcfg.lr, betas=self.tcfg.adam_betas)
        self.loss_fn = SF.mse_count_loss(correct_rate=self.tcfg.correct_rate, incorrect_rate=self.tcfg.incorrect_rate)
        self.iters_per_epoch = math.ceil(len(self.train_split) / self.tcfg.batch_size)
        self.state = _initial_state(plan, init_from, refit_from, self.iters_per_epoch)
        if plan.prev is not None:
            self.model.load_state_dict(plan.prev.state_dict, strict=False)
            self.optimizer.load_state_dict(plan.prev.train_state["optimizer"])
            torch.set_rng_state(plan.prev.train_state["torch_rng"])

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state["history"]

    def checkpoint(self, path: Path, with_state: bool, metrics: dict[str, Any]) -> None:
        import torch

        train_state = None
        if with_state:
            train_state = {**self.state, "optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
        save_checkpoint(Checkpoint(self.cfg, model_state(self.model), self.tcfg, self.plan.preset, metrics, train_state), path)

    def log(self, line: str) -> None:
        from tqdm import tqdm

        with open(self.out / "train.log", "a", encoding="utf-8") as fh:  # append-only log; a torn last line is harmless
            fh.write(line + "\n")
        if self.progress:
            tqdm.write(line)

    def evaluate(self) -> tuple[float | None, float]:
        """(validation accuracy or None without a validation split, test accuracy)."""
        val = evaluate(self.model, self.val_split, progress=self.progress, desc="validation") if self.val_split is not None else None
        return val, evaluate(self.model, self.test_split, progress=self.progress, desc="test")

    def record_start(self) -> None:
        """Epoch 0 of a fine-tuning run: the starting model is the bar to beat."""
        val_acc, test_acc = self.evaluate()
        self.state.update(best_val_acc=val_acc, best_epoch=0, test_acc_at_best=test_acc)
        self.history.append(
            {
                "epoch": 0,
                "train_loss": None,
                "train_acc": None,
                "val_acc": round(val_acc, 6),
                "test_acc": round(test_acc, 6),
                "lr_end": 0.0,
                "seconds": 0.0,
                "best_epoch": 0,
            }
        )
        metrics = {
            "best_epoch": 0,
            "best_val_acc": val_acc,
            "test_acc_at_best": test_acc,
            "epoch": 0,
            "val_acc": val_acc,
            "test_acc": test_acc,
            "target": self.target.name,
        }
        self.checkpoint(self.out / "best.pt", False, metrics)
        self.log(f"epoch 0 (start of fine-tuning on {self.target.name}): val {val_acc:.4f} test {test_acc:.4f}")

    def fit_epoch(self, epoch: int) -> tuple[float, float]:
        """One epoch of training in the run's precision; (mean loss, training accuracy)."""
        from qsnn_deploy.training.precision import training_precision

        model = self.model
        model.train(self.target is None)  # target arithmetic needs BN's running statistics and no dropout
        with training_precision(model, self.tcfg.precision):  # the steps only: evaluation stays fp32
            return self._fit_batches(epoch)

    def _fit_batches(self, epoch: int) -> tuple[float, float]:
        import torch
        from tqdm import tqdm

        from qsnn_deploy.data.loaders import iterate_batches
        from qsnn_deploy.training.model import predict
        from qsnn_deploy.training.schedules import learning_rate

        tcfg, state, model = self.tcfg, self.state, self.model
        losses, correct, seen = [], 0, 0
        batches = iterate_batches(self.train_split, tcfg.batch_size, shuffle=True, seed=tcfg.seed, epoch=epoch)
        bar = tqdm(batches, total=self.iters_per_epoch, desc=f"epoch {epoch}", leave=False, disable=not self.progress, position=1)
        for xb, yb in bar:
            lr = learning_rate(tcfg, state["iteration"], self.iters_per_epoch, state["loss_halvings"])
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            x, y = _to_tensor(xb), _to_tensor(yb)
            spikes = model(x)
            loss = self.loss_fn(spikes, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            self.optimizer.step()
            if tcfg.weight_clip:
                model.clamp_weights()
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise QsnnError(f"training diverged: loss is {loss_value} at epoch {epoch}, iteration {state['iteration']}")
            correct += int((predict(spikes.detach()) == y).sum())
            seen += len(yb)
            losses.append(loss_value)
            state["iter_loss"].append(loss_value)
            state["iter_lr"].append(lr)
            state["iteration"] += 1
            bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{correct / seen:.3f}", lr=f"{lr:.2e}")
        train_loss = float(np.mean(losses)) if losses else float("nan")
        if tcfg.schedule == "loss-step":
            if train_loss >= state["best_train_loss"]:
                state["loss_halvings"] += 1
            state["best_train_loss"] = min(state["best_train_loss"], train_loss)
        return train_loss, correct / max(seen, 1)

    def record_epoch(self, epoch: int, train_loss: float, train_acc: float, val_acc: float | None, test_acc: float, seconds: float) -> str:
        """Early-stopping bookkeeping, checkpoints, logs and plots of one epoch; the log line."""
        from qsnn_deploy.training.plots import plot_run

        state = self.state
        state["wall_seconds"] += seconds
        improved = val_acc is None or val_acc > state["best_val_acc"]
        if improved:
            state.update(best_val_acc=val_acc, best_epoch=epoch, test_acc_at_best=test_acc, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        row = {
            "epoch": epoch,
            "train_loss": round(train_loss, 6),
            "train_acc": round(train_acc, 6),
            "val_acc": None if val_acc is None else round(val_acc, 6),
            "test_acc": round(test_acc, 6),
            "lr_end": state["iter_lr"][-1] if state["iter_lr"] else self.tcfg.lr,
            "seconds": round(seconds, 1),
            "best_epoch": state["best_epoch"],
        }
        self.history.append(row)
        state["epoch"] = epoch
        metrics = {
            "best_epoch": state["best_epoch"],
            "best_val_acc": state["best_val_acc"],
            "test_acc_at_best": state["test_acc_at_best"],
            "epochs_run": epoch,
            "wall_seconds": round(state["wall_seconds"], 1),
        }
        if self.target is not None:
            metrics["target"] = self.target.name
        if improved:
            self.checkpoint(self.out / "best.pt", False, {**metrics, "epoch": epoch, "val_acc": val_acc, "test_acc": test_acc})
        self.checkpoint(self.out / "last.pt", True, metrics)
        _write_logs(self.out, self.history, state["iter_loss"], state["iter_lr"])
        plot_run(self.out, state["iter_loss"], state["iter_lr"], self.history)
        line = (
            f"epoch {epoch}: loss {train_loss:.4f} train {row['train_acc']:.4f} val {_accuracy_text(val_acc)} test {test_acc:.4f} "
            f"lr {row['lr_end']:.3g} {seconds:.0f}s best@{state['best_epoch']} ({state['test_acc_at_best']:.4f})"
        )
        self.log(line)
        return line

    @property
    def stopped_early(self) -> bool:
        return self.state["bad_epochs"] >= self.tcfg.patience


def _fit_epochs(run: _Run, last_epoch: int, on_epoch: Callable[[dict[str, Any]], None] | None, progress: bool) -> None:
    """Fit, evaluate and record each epoch after the run's last one, until ``last_epoch`` or early stopping."""
    from tqdm import tqdm

    epoch_bar = tqdm(range(run.state["epoch"] + 1, last_epoch + 1), desc="epochs", disable=not progress, position=0)
    for epoch in epoch_bar:
        if run.stopped_early:
            break
        t0 = time.perf_counter()
        train_loss, train_acc = run.fit_epoch(epoch)
        val_acc, test_acc = run.evaluate()
        run.record_epoch(epoch, train_loss, train_acc, val_acc, test_acc, time.perf_counter() - t0)
        if on_epoch is not None:
            on_epoch(run.history[-1])
        epoch_bar.set_postfix(val=_accuracy_text(val_acc), best=f"{_accuracy_text(run.state['best_val_acc'])}@{run.state['best_epoch']}")


def _check_precision(plan: Plan) -> None:
    """bf16 is the conv QSNN's, and not for a fine-tune, whose currents must be the deployment's."""
    precision = plan.train_cfg.precision
    if precision != "fp32" and plan.target is not None:
        raise QsnnError(f"precision {precision}: a fine-tune runs the target's integer arithmetic on fp32 currents; use fp32")
    if precision != "fp32" and plan.model_cfg.kind != "conv":
        raise QsnnError(f"precision {precision} is implemented for the conv QSNN only, not for a {plan.model_cfg.kind} model")


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out_dir: str | Path,
    *,
    preset: str | None = None,
    data_dir: str | Path | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    init_from: Checkpoint | None = None,
    target: Any = None,
    refit_from: Checkpoint | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train (or resume) a run into ``out_dir``: restore, then fit / evaluate / record each epoch (module docstring).

    ``on_epoch`` is called with each epoch's metrics row once the epoch is saved; it may raise
    to stop the run (a hyperparameter search prunes a trial this way).
    """
    import torch

    from qsnn_deploy.targets import load_target

    out = Path(out_dir)
    plan = restore(
        model_cfg,
        train_cfg,
        out,
        preset=preset,
        limit_train=limit_train,
        limit_test=limit_test,
        resume=resume,
        force=force,
        init_from=init_from,
        target=target,
        refit_from=refit_from,
    )
    torch.manual_seed(plan.train_cfg.seed)
    splits = _load_data(plan, data_dir)
    _check_precision(plan)
    if plan.target is not None:
        plan.target = load_target(plan.target)
    out.mkdir(parents=True, exist_ok=True)  # only once the data loaded: a failed start leaves no empty run folder
    run = _Run(plan, out, splits, init_from, refit_from, progress)
    if run.target is not None and run.state["epoch"] == 0:
        run.record_start()
    _fit_epochs(run, plan.train_cfg.epochs, on_epoch, progress)
    s = run.state
    return RunResult(out, s["epoch"], s["best_epoch"], s["best_val_acc"], s["test_acc_at_best"], run.history, run.stopped_early)
