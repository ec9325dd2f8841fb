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
from qsnn_deploy.errors import CheckpointError, OutputExistsError, QsnnError
from qsnn_deploy.training.checkpoint import Checkpoint, load_checkpoint, model_state, save_checkpoint
from qsnn_deploy.training.config import ModelConfig, TrainConfig

EVAL_BATCH = 256


@dataclass
class RunResult:
    out_dir: Path
    epochs_run: int
    best_epoch: int
    best_val_acc: float | None  # None: a refit, which has no validation split
    test_acc_at_best: float
    history: list[dict[str, Any]]
    stopped_early: bool


def _to_tensor(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))


def evaluate(model: Any, split: Any, batch_size: int = EVAL_BATCH, progress: bool = False, desc: str = "eval") -> float:
    """Accuracy of ``model`` (eval mode, fast forward) on a data ``Split``."""
    import torch
    from tqdm import tqdm

    from qsnn_deploy.data.loaders import iterate_batches
    from qsnn_deploy.training.model import predict

    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        batches = iterate_batches(split, batch_size, shuffle=False)
        total = math.ceil(len(split) / batch_size)
        for xb, yb in tqdm(batches, total=total, desc=desc, leave=False, disable=not progress):
            correct += int((predict(model(_to_tensor(xb))) == _to_tensor(yb)).sum())
    model.train(was_training)
    return correct / max(len(split), 1)


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
    """Train (or resume) a run into ``out_dir``; see the module docstring.

    ``on_epoch`` is called with each epoch's metrics row once the epoch is saved; it may raise
    to stop the run (a hyperparameter search prunes a trial this way).
    """
    import snntorch.functional as SF
    import torch
    from tqdm import tqdm

    from qsnn_deploy.data.loaders import iterate_batches, load_split, train_val_split
    from qsnn_deploy.targets import TargetProfile, load_target
    from qsnn_deploy.training.finetune import TargetArithmetic
    from qsnn_deploy.training.model import QSNN, predict
    from qsnn_deploy.training.plots import plot_run
    from qsnn_deploy.training.schedules import learning_rate

    out = Path(out_dir)
    last_path = out / "last.pt"
    prev: Checkpoint | None = None
    if refit_from is not None and (resume or init_from is not None):
        raise QsnnError(
            "a refit starts a new run from a run's last.pt: not with --resume or --finetune (resume a refit later with --resume alone)"
        )
    if resume:
        if not last_path.is_file():
            raise CheckpointError(f"--resume: no {last_path} to resume from")
        prev = load_checkpoint(last_path)
    elif refit_from is not None:
        prev = refit_from
    if prev is not None:
        if prev.train_state is None or prev.train_config is None:
            raise CheckpointError(f"{prev.source}: has no training state to continue from (a run's last.pt has it)")
        if refit_from is not None and prev.train_state.get("target"):
            raise QsnnError(f"{prev.source}: is a fine-tuning run; refit the QAT run it started from")
        if refit_from is not None and train_cfg.epochs <= prev.train_state["epoch"]:
            raise QsnnError(f"refit up to epoch {train_cfg.epochs}: {prev.source} is already at epoch {prev.train_state['epoch']}")
        model_cfg = prev.model_config
        # Only the epoch budget and patience may change on resume; the recipe stays (a refit
        # changes the data split only).
        changes: dict[str, Any] = {"epochs": train_cfg.epochs, "patience": train_cfg.patience}
        if refit_from is not None:
            changes["val_fraction"] = 0.0
        train_cfg = TrainConfig.from_dict({**prev.train_config.to_dict(), **changes})
        preset = prev.preset
        limit_train = prev.train_state.get("limit_train", limit_train)
        limit_test = prev.train_state.get("limit_test", limit_test)
        saved_target = prev.train_state.get("target")
        target = TargetProfile.from_dict(saved_target) if saved_target else None
    if not resume and last_path.exists() and not force:
        raise OutputExistsError(f"{out} already holds a run (last.pt); use --resume to continue it or --force to start over")

    torch.manual_seed(train_cfg.seed)
    full_train = load_split(
        train_cfg.dataset, "train", data_dir=data_dir, timesteps=model_cfg.timesteps, limit=limit_train, seed=train_cfg.seed
    )
    if train_cfg.val_fraction == 0.0:
        train_split, val_split = full_train, None
    else:
        train_split, val_split = train_val_split(full_train, train_cfg.val_fraction, train_cfg.seed)
    test_split = load_split(
        train_cfg.dataset, "test", data_dir=data_dir, timesteps=model_cfg.timesteps, limit=limit_test, seed=train_cfg.seed
    )
    if full_train.num_classes != model_cfg.num_classes:
        raise QsnnError(f"data set {train_cfg.dataset} has {full_train.num_classes} classes, the model {model_cfg.num_classes}")

    if target is not None:
        target = load_target(target)
    out.mkdir(parents=True, exist_ok=True)  # only once the data loaded: a failed start leaves no empty run folder
    model = QSNN(model_cfg)
    if init_from is not None and not resume:
        model.load_state_dict(init_from.state_dict, strict=False)
    if target is not None:
        model.target_arithmetic = TargetArithmetic(target)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_cfg.lr, betas=train_cfg.adam_betas)
    loss_fn = SF.mse_count_loss(correct_rate=train_cfg.correct_rate, incorrect_rate=train_cfg.incorrect_rate)
    iters_per_epoch = math.ceil(len(train_split) / train_cfg.batch_size)

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
        "limit_train": limit_train,
        "limit_test": limit_test,
        "target": target.to_dict() if target is not None else None,
        "init_from": init_from.source if init_from is not None else None,
        "refit_from": None,
    }
    if prev is not None:
        model.load_state_dict(prev.state_dict, strict=False)
        ts = prev.train_state
        optimizer.load_state_dict(ts["optimizer"])
        torch.set_rng_state(ts["torch_rng"])
        state.update({k: ts[k] for k in state if k in ts})
    if refit_from is not None:
        # The schedule counts iterations, and an epoch of the whole set has more of them:
        # restart the count at the branch epoch's boundary so the LR keeps its phase.
        state.update(
            iteration=state["epoch"] * iters_per_epoch, bad_epochs=0, refit_from={"checkpoint": refit_from.source, "epoch": state["epoch"]}
        )
    history: list[dict[str, Any]] = state["history"]

    def checkpoint(path: Path, with_state: bool, metrics: dict[str, Any]) -> None:
        train_state = None
        if with_state:
            train_state = {**state, "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
        save_checkpoint(Checkpoint(model_cfg, model_state(model), train_cfg, preset, metrics, train_state), path)

    def log(line: str) -> None:
        with open(out / "train.log", "a", encoding="utf-8") as fh:  # append-only log; a torn last line is harmless
            fh.write(line + "\n")
        if progress:
            tqdm.write(line)

    if target is not None and state["epoch"] == 0:
        # the starting model is the bar to beat: fine-tuning must not ship a worse deployment
        val_acc = evaluate(model, val_split, progress=progress, desc="validation")
        test_acc = evaluate(model, test_split, progress=progress, desc="test")
        state.update(best_val_acc=val_acc, best_epoch=0, test_acc_at_best=test_acc)
        history.append(
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
        checkpoint(
            out / "best.pt",
            False,
            {
                "best_epoch": 0,
                "best_val_acc": val_acc,
                "test_acc_at_best": test_acc,
                "epoch": 0,
                "val_acc": val_acc,
                "test_acc": test_acc,
                "target": target.name,
            },
        )
        log(f"epoch 0 (start of fine-tuning on {target.name}): val {val_acc:.4f} test {test_acc:.4f}")

    stopped_early = state["bad_epochs"] >= train_cfg.patience
    epoch_bar = tqdm(range(state["epoch"] + 1, train_cfg.epochs + 1), desc="epochs", disable=not progress, position=0)
    for epoch in epoch_bar:
        if stopped_early:
            break
        t0 = time.perf_counter()
        model.train(target is None)  # target arithmetic needs BN's running statistics and no dropout
        losses, correct, seen = [], 0, 0
        bar = tqdm(
            iterate_batches(train_split, train_cfg.batch_size, shuffle=True, seed=train_cfg.seed, epoch=epoch),
            total=iters_per_epoch,
            desc=f"epoch {epoch}",
            leave=False,
            disable=not progress,
            position=1,
        )
        for xb, yb in bar:
            lr = learning_rate(train_cfg, state["iteration"], iters_per_epoch, state["loss_halvings"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = _to_tensor(xb), _to_tensor(yb)
            spikes = model(x)
            loss = loss_fn(spikes, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train_cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if train_cfg.weight_clip:
                model.clamp_weights()
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise QsnnError(f"training diverged: loss is {loss_value} at epoch {epoch}, iteration {state['iteration']}")
            batch_correct = int((predict(spikes.detach()) == y).sum())
            correct += batch_correct
            seen += len(yb)
            losses.append(loss_value)
            state["iter_loss"].append(loss_value)
            state["iter_lr"].append(lr)
            state["iteration"] += 1
            bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{correct / seen:.3f}", lr=f"{lr:.2e}")
        train_loss = float(np.mean(losses)) if losses else float("nan")
        if train_cfg.schedule == "loss-step":
            if train_loss >= state["best_train_loss"]:
                state["loss_halvings"] += 1
            state["best_train_loss"] = min(state["best_train_loss"], train_loss)
        val_acc = evaluate(model, val_split, progress=progress, desc="validation") if val_split is not None else None
        test_acc = evaluate(model, test_split, progress=progress, desc="test")
        seconds = time.perf_counter() - t0
        state["wall_seconds"] += seconds
        improved = val_acc is None or val_acc > state["best_val_acc"]
        if improved:
            state.update(best_val_acc=val_acc, best_epoch=epoch, test_acc_at_best=test_acc, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        row = {
            "epoch": epoch,
            "train_loss": round(train_loss, 6),
            "train_acc": round(correct / max(seen, 1), 6),
            "val_acc": None if val_acc is None else round(val_acc, 6),
            "test_acc": round(test_acc, 6),
            "lr_end": state["iter_lr"][-1] if state["iter_lr"] else train_cfg.lr,
            "seconds": round(seconds, 1),
            "best_epoch": state["best_epoch"],
        }
        history.append(row)
        state["epoch"] = epoch
        metrics = {
            "best_epoch": state["best_epoch"],
            "best_val_acc": state["best_val_acc"],
            "test_acc_at_best": state["test_acc_at_best"],
            "epochs_run": epoch,
            "wall_seconds": round(state["wall_seconds"], 1),
        }
        if target is not None:
            metrics["target"] = target.name
        if improved:
            checkpoint(out / "best.pt", False, {**metrics, "epoch": epoch, "val_acc": val_acc, "test_acc": test_acc})
        stopped_early = state["bad_epochs"] >= train_cfg.patience
        checkpoint(last_path, True, metrics)
        _write_logs(out, history, state["iter_loss"], state["iter_lr"])
        plot_run(out, state["iter_loss"], state["iter_lr"], history)
        val_text = _accuracy_text(val_acc)
        line = (
            f"epoch {epoch}: loss {train_loss:.4f} train {row['train_acc']:.4f} val {val_text} test {test_acc:.4f} "
            f"lr {row['lr_end']:.3g} {seconds:.0f}s best@{state['best_epoch']} ({state['test_acc_at_best']:.4f})"
        )
        epoch_bar.set_postfix(val=val_text, best=f"{_accuracy_text(state['best_val_acc'])}@{state['best_epoch']}")
        log(line)
        if on_epoch is not None:
            on_epoch(row)
    return RunResult(out, state["epoch"], state["best_epoch"], state["best_val_acc"], state["test_acc_at_best"], history, stopped_early)
