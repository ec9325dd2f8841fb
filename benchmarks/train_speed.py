"""Training speed: the paper's per-step loop vs the fast trainer in fp32 and in bf16, same model and data.

Times one optimiser step (forward, spike-count MSE loss, backward, Adam step) of the
Fashion-MNIST QSNN at T=100 and batch 128 along four paths of
``qsnn_deploy.training.model.QSNN``, in one process, on the same batch:

- the reference code's loop as written: each step calls the Brevitas ``QuantConv2d`` /
  ``QuantLinear`` modules (which re-quantise their weights at every call) and snnTorch ``Leaky``;
- the same per-step loop with each weight quantised once per batch (``forward_reference``);
- the fast time-batched forward in fp32 (spike for spike the per-step loop's);
- the fast forward with ``--precision bf16`` (:mod:`qsnn_deploy.training.precision`).

The rounds are interleaved (one step of each path per round), so a change in the machine's
load hits all of them alike; it prints the median s/batch and the speed-up over the paper's loop. Then, on one batch with the weights of ``--checkpoint`` (default: the shipped model),
it compares a bf16 training step with the fp32 one: the share of identical spikes per layer
and of identical predictions, and the cosine similarity of each parameter's gradient; the
same for a float64 step, which shows how far float rounding alone moves a spiking net. Run it with the allocator setting
the CLI uses (it re-executes itself with it)::

    python benchmarks/train_speed.py [--timesteps 100] [--batch-size 128] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent.parent / "runs" / "fmnist-int4" / "best.pt"


def _batch(args):
    import numpy as np
    import torch

    from qsnn_deploy.data.loaders import load_split
    from qsnn_deploy.errors import DataError

    try:
        split = load_split(args.data, "train", limit=args.batch_size, seed=0)
    except DataError:
        split = load_split("synthetic", "train", limit=args.batch_size, seed=0)
    x = torch.from_numpy(np.ascontiguousarray(split.x[: args.batch_size]))
    return x, torch.from_numpy(split.y[: args.batch_size]), f"{split.encoding}:{args.data}"


def paper_loop(model):
    """The reference code's loop as written: every step calls the Brevitas modules themselves.

    Numerically the same as ``forward_reference`` (which quantises each weight once per batch
    instead of once per module call); ``main`` checks that both give the same output spikes.
    Reimplemented here, not in the library: it is only a baseline to time.
    """
    import torch
    import torch.nn.functional as F

    def forward(x):
        cfg = model.config
        x = model._scaled_input(x)
        mems = [lif.init_leaky() for lif in model.lifs]
        out = []
        for t in range(cfg.timesteps):
            h = x[:, t] if cfg.encoding == "frames" else x
            for i, conv in enumerate(model.convs):
                cur = F.avg_pool2d(conv(h), 2)
                if model.bns is not None:
                    cur = model.bns[i](cur)
                h, mems[i] = model.lifs[i](cur, mems[i])
            h, mems[-1] = model.lifs[-1](model.fc(model.dropout(h.flatten(1))), mems[-1])
            out.append(h)
        return torch.stack(out)

    return forward


def time_paths(model, x, y, loss_fn, lr: float, repeats: int) -> dict[str, list[float]]:
    """s/batch of each path's optimiser steps, the paths interleaved round by round."""
    import torch

    from qsnn_deploy.training.precision import training_precision

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def step(forward, precision: str) -> float:
        t0 = time.perf_counter()
        with training_precision(model, precision):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(forward(x), y)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - t0

    paths = {
        "paper's loop as written (Brevitas call per step), fp32": (paper_loop(model), "fp32"),
        "per-step loop, weights quantised once, fp32": (model.forward_reference, "fp32"),
        "fast time-batched, fp32": (model.forward, "fp32"),
        "fast time-batched, bf16": (model.forward, "bf16"),
    }
    for forward, precision in paths.values():
        step(forward, precision)  # warm-up: Numba compilation, allocator
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, (forward, precision) in paths.items():
            times[name].append(step(forward, precision))
    return times


def agreement(model, x, y, loss_fn) -> dict[str, tuple[list[float], float, dict[str, float]]]:
    """bf16 vs fp32, and fp64 vs fp32 for scale, on one training step from the same weights and batch.

    Per variant: (share of identical spikes per layer, share of identical predictions, cosine
    similarity of each parameter's gradient with fp32's).
    """
    import torch
    import torch.nn.functional as F

    from qsnn_deploy.training.model import QSNN, predict
    from qsnn_deploy.training.precision import training_precision

    def run(net, precision):
        net.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same dropout masks
        with training_precision(net, precision):
            rec = net(x, record=True)
            loss_fn(rec.spikes[-1], y).backward()
        return [s.float() for s in rec.spikes], {n: p.grad.flatten().double() for n, p in net.named_parameters()}

    def twin(dtype):  # every variant starts from the same weights and BatchNorm statistics
        net = QSNN(model.config).to(dtype).train()
        net.load_state_dict(model.state_dict())
        return net

    s32, g32 = run(twin(torch.float32), "fp32")
    out = {}
    for name, dtype, precision in (("bf16", torch.float32, "bf16"), ("fp64", torch.float64, "fp32")):
        spikes, grads = run(twin(dtype), precision)
        same = [float((a == b).float().mean()) for a, b in zip(s32, spikes)]
        predictions = float((predict(s32[-1]) == predict(spikes[-1])).float().mean())
        out[name] = (same, predictions, {n: float(F.cosine_similarity(g32[n], grads[n], dim=0)) for n in g32})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default="fmnist", help="fmnist (real images if installed) or synthetic")
    parser.add_argument("--threads", type=int, default=None, help="torch and Numba threads (default: theirs, one per core)")
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED if SHIPPED.is_file() else None, help="weights of the agreement check")
    args = parser.parse_args()

    from qsnn_deploy.app.perf import ALLOCATOR_ENV

    # the same allocator setting the CLI runs with, for every path (see qsnn_deploy/app/perf.py)
    if not all(os.environ.get(k) == v for k, v in ALLOCATOR_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **ALLOCATOR_ENV})

    import snntorch.functional as SF
    import torch

    from qsnn_deploy.training.checkpoint import load_checkpoint
    from qsnn_deploy.training.config import get_preset, override
    from qsnn_deploy.training.model import QSNN

    if args.threads is not None:  # fewer threads than cores: less exposed to other processes on a shared machine
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    preset = get_preset("fmnist-int4")
    cfg = override(preset.model, timesteps=args.timesteps)
    x, y, data = _batch(args)
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    torch.manual_seed(0)
    model = QSNN(cfg).train()
    with torch.no_grad():  # the baseline computes what the per-step loop computes
        torch.manual_seed(1)
        written = paper_loop(model)(x)
        torch.manual_seed(1)
        same = float((written == model.forward_reference(x)).float().mean())
    load = os.getloadavg()[0]
    times = time_paths(model, x, y, loss_fn, preset.train.lr, args.repeats)
    print(
        f"Fashion-MNIST QSNN (16C5-AP2-64C5-AP2-1024D10, int4), T={args.timesteps}, batch {len(y)}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, data {data}, "
        f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(f"  output spikes of the paper's loop as written equal the per-step loop's: {same:.2%}")
    ref = statistics.median(next(iter(times.values())))
    print(f"  {'path':56s} {'s/batch':>8s} {'speed-up':>9s}  runs")
    for name, runs in times.items():
        med = statistics.median(runs)
        print(f"  {name:56s} {med:8.3f} {ref / med:8.2f}x  {', '.join(f'{t:.3f}' for t in runs)}")
    if args.checkpoint is not None:
        model.load_state_dict(load_checkpoint(args.checkpoint).state_dict, strict=False)
        weights = f"weights of {args.checkpoint}"
    else:
        weights = "initial weights (no --checkpoint)"
    print(f"one training step on this batch vs fp32's, {weights} (fp64: what float rounding alone does):")
    for name, (same, predictions, cosines) in agreement(model, x, y, loss_fn).items():
        print(
            f"  {name}: identical spikes "
            + ", ".join(f"lif{i + 1} {s:.2%}" for i, s in enumerate(same))
            + f"; predictions {predictions:.2%}"
        )
        print("        gradient cosine " + ", ".join(f"{n.removesuffix('.weight')} {c:.4f}" for n, c in cosines.items()))


if __name__ == "__main__":
    main()
