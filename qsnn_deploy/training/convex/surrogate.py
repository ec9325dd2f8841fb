r"""Surrogate-gradient training of the witness stacks (the ``sg`` baseline, ``sg-cvx`` and ``cvx-sg``).

The forward pass is the integer network of :mod:`.model` exactly: weights, biases and the decay's
floor are rounded with straight-through estimators, so a trained net rounds to the integer net
that produced its last forward pass. The spike's backward is the fast sigmoid of snnTorch,
dS/dV = 1 / (1 + k |V - Theta| / Theta)^2 with k = :data:`~.model.SURROGATE_SLOPE`, the slope
measured in units of the layer's threshold because the membranes are in integer units. The
reset is detached, as snnTorch's default. The readout is a float linear layer on the features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from qsnn_deploy.training.convex.model import SURROGATE_SLOPE, StackConfig, StackWeights


def _spike_fn():
    import torch

    class FastSigmoidSpike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, theta):  # type: ignore[override]
            ctx.save_for_backward(u)
            ctx.theta = theta
            return (u >= theta).to(u.dtype)

        @staticmethod
        def backward(ctx, grad):  # type: ignore[override]
            (u,) = ctx.saved_tensors
            return grad / (1 + SURROGATE_SLOPE * (u - ctx.theta).abs() / ctx.theta) ** 2 * (SURROGATE_SLOPE / ctx.theta), None

    return FastSigmoidSpike.apply


def _ste_round(x):
    return x + (x.round() - x).detach()


def build_surrogate(cfg: StackConfig, hidden: StackWeights, readout: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """A torch module initialised from ``hidden`` (and a float readout (W, b) if given)."""
    import torch

    class SurrogateStack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.ParameterList([torch.nn.Parameter(torch.from_numpy(w).float()) for w in hidden.weights])
            self.b = torch.nn.ParameterList([torch.nn.Parameter(torch.from_numpy(b).float()) for b in hidden.biases])
            self.thresholds = list(hidden.thresholds)
            self.fc = torch.nn.Linear(cfg.feature_count, cfg.num_classes)
            if readout is not None:
                with torch.no_grad():
                    self.fc.weight.copy_(torch.from_numpy(readout[0]).float())
                    self.fc.bias.copy_(torch.from_numpy(readout[1]).float())
            self.spike = _spike_fn()
            self.wmax = 2 ** (cfg.weight_bits - 1) - 1

        def features(self, x):
            n = x.shape[0]
            v = [torch.zeros(n, cfg.stacks, m) for m in cfg.widths]
            feats = torch.zeros(n, cfg.feature_count)
            beta = cfg.decay_mul / 2**cfg.decay_shift
            for t in range(cfg.timesteps):
                h = x[:, t]
                for i, (w, b, theta) in enumerate(zip(self.w, self.b, self.thresholds)):
                    wq = _ste_round(w.clamp(-self.wmax, self.wmax))
                    a = torch.einsum("bi,koi->bko", h, wq) if i == 0 else torch.einsum("bki,koi->bko", h, wq)
                    decayed = v[i] * beta
                    u = decayed + (torch.floor(decayed) - decayed).detach() + a + _ste_round(b)
                    h = self.spike(u, float(theta))
                    v[i] = u - h.detach() * theta if cfg.reset == "subtract" else u * (1 - h.detach())
                if cfg.features == "count" or t == cfg.timesteps - 1:
                    feats = feats + h.reshape(n, -1)
            return feats

        def forward(self, x):
            return self.fc(self.features(x))

        def rounded(self) -> StackWeights:
            with torch.no_grad():
                ws = [w.clamp(-self.wmax, self.wmax).round().long().numpy() for w in self.w]
                bs = [b.round().long().numpy() for b in self.b]
            return StackWeights(ws, bs, list(self.thresholds))

    return SurrogateStack()


@dataclass
class SurrogateResult:
    hidden: StackWeights  # rounded: the integer net of the best epoch
    readout: tuple[np.ndarray, np.ndarray]  # float (W, b) of the best epoch
    history: list[dict[str, Any]]  # per epoch: epoch, train_loss, val_acc, seconds


def train_surrogate(
    cfg: StackConfig,
    hidden: StackWeights,
    train: Any,
    val: Any,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    readout: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = True,
) -> SurrogateResult:
    """Adam on cross-entropy; hidden weights step ``weight_std`` times faster (they live in integer units).

    The epoch with the best validation accuracy is kept.
    """
    import time

    import torch
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    net = build_surrogate(cfg, hidden, readout)
    opt = torch.optim.Adam(
        [{"params": [*net.w, *net.b], "lr": lr * cfg.weight_std}, {"params": net.fc.parameters(), "lr": lr}],
    )
    x_tr = torch.from_numpy(train.x.reshape(len(train), cfg.timesteps, -1).astype(np.float32))
    y_tr = torch.from_numpy(train.y)
    x_va = torch.from_numpy(val.x.reshape(len(val), cfg.timesteps, -1).astype(np.float32))
    best: tuple[float, StackWeights, tuple[np.ndarray, np.ndarray]] | None = None
    history: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in tqdm(range(1, epochs + 1), desc="surrogate", unit="epoch", disable=not progress):
        start, losses = time.perf_counter(), []
        net.train()
        for idx in torch.randperm(len(train), generator=gen).split(batch_size):
            loss = torch.nn.functional.cross_entropy(net(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        with torch.no_grad():
            val_acc = float((net(x_va).argmax(dim=1).numpy() == val.y).mean())
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_acc": val_acc, "seconds": time.perf_counter() - start})
        if best is None or val_acc > best[0]:
            with torch.no_grad():
                best = (
                    val_acc,
                    net.rounded(),
                    (net.fc.weight.numpy().astype(np.float64).copy(), net.fc.bias.numpy().astype(np.float64).copy()),
                )
    assert best is not None  # noqa: S101 - epochs >= 1 is checked by the caller
    return SurrogateResult(best[1], best[2], history)


__all__ = ["SurrogateResult", "build_surrogate", "train_surrogate"]
