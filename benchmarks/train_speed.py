"""Training speed: fast time-batched trainer vs the paper's per-step loop, same model and data.

Times one optimiser step (forward, spike-count MSE loss, backward, Adam step) of the
Fashion-MNIST QSNN at T=100 and batch 128 with both forward passes of
``qsnn_deploy.training.model.QSNN``, in the same process and on the same batch, and prints both
times per batch and their ratio. Run it with the allocator setting the CLI uses::

    python benchmarks/train_speed.py [--timesteps 100] [--batch-size 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default="fmnist", help="fmnist (real images if installed) or synthetic")
    args = parser.parse_args()

    from qsnn_deploy.app.perf import ALLOCATOR_ENV

    # the same allocator setting the CLI runs with, for both trainers (see qsnn_deploy/app/perf.py)
    if not all(os.environ.get(k) == v for k, v in ALLOCATOR_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **ALLOCATOR_ENV})

    import numpy as np
    import snntorch.functional as SF
    import torch

    from qsnn_deploy.data.loaders import load_split
    from qsnn_deploy.errors import DataError
    from qsnn_deploy.training.config import get_preset, override
    from qsnn_deploy.training.model import QSNN

    preset = get_preset("fmnist-int4")
    cfg = override(preset.model, timesteps=args.timesteps)
    try:
        split = load_split(args.data, "train", limit=args.batch_size, seed=0)
    except DataError:
        split = load_split("synthetic", "train", limit=args.batch_size, seed=0)
    x = torch.from_numpy(np.ascontiguousarray(split.x[: args.batch_size]))
    y = torch.from_numpy(split.y[: args.batch_size])
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    torch.manual_seed(0)
    model = QSNN(cfg).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.train.lr)

    def step(forward) -> float:
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward(x), y)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t0

    results = {}
    for name, forward in (("per-step loop (snnTorch Leaky, reference)", model.forward_reference), ("fast time-batched", model.forward)):
        step(forward)  # warm-up: Numba compilation, allocator
        results[name] = [step(forward) for _ in range(args.repeats)]
    ref, fast = (statistics.median(v) for v in results.values())
    print(
        f"Fashion-MNIST QSNN (16C5-AP2-64C5-AP2-1024D10, int4), T={args.timesteps}, batch {len(y)}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, data {split.encoding}:{args.data}"
    )
    for name, times in results.items():
        print(f"  {name:45s} {statistics.median(times):7.3f} s/batch  (runs: {', '.join(f'{t:.3f}' for t in times)})")
    print(f"  speed-up: {ref / fast:.2f}x")


if __name__ == "__main__":
    main()
