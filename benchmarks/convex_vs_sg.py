"""Convex parameter reconstruction vs surrogate gradients, side by side in one run.

Trains the same witness-stack network (docs/convex.md) on FIRST-LAST-XOR (T = 6) and on
sequential Fashion-MNIST (28 rows as 28 steps) with every method (``cvx``, ``sg``, ``sg-cvx``,
``cvx-sg``), and prints test accuracy of the deployed integer model, feature neurons kept and
wall time per run. The authors report 1.00 (convex) vs 0.74 (surrogate) on FIRST-LAST-XOR at
T = 6 with 5 layers; this run is sized for minutes on 2 CPU cores::

    python benchmarks/convex_vs_sg.py [--xor-stacks 128] [--sg-epochs 20] [--fmnist-train 10000] [--skip-fmnist]
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--xor-stacks", type=int, default=128)
    parser.add_argument("--sg-epochs", type=int, default=20)
    parser.add_argument("--fmnist-stacks", type=int, default=64)
    parser.add_argument("--fmnist-train", type=int, default=10000)
    parser.add_argument("--fmnist-test", type=int, default=2000)
    parser.add_argument("--fmnist-epochs", type=int, default=5)
    parser.add_argument("--methods", default="cvx,sg,sg-cvx,cvx-sg")
    parser.add_argument("--skip-fmnist", action="store_true")
    args = parser.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    from qsnn_deploy.training.convex.methods import ConvexRun, run_method

    torch.set_num_threads(1)  # the thin products here ran up to 18x faster on one thread of a busy 2-core machine
    tasks = [
        ("first-last-xor T=6", ConvexRun(data="first-last-xor", timesteps=6, stacks=args.xor_stacks, widths=(4, 4), epochs=args.sg_epochs))
    ]
    if not args.skip_fmnist:
        tasks.append(
            (
                "seq-fmnist T=28",
                ConvexRun(
                    data="seq-fmnist",
                    timesteps=28,
                    stacks=args.fmnist_stacks,
                    widths=(16, 8),
                    loss="softmax",
                    epochs=args.fmnist_epochs,
                    limit_train=args.fmnist_train,
                    limit_test=args.fmnist_test,
                    strengths=4,
                ),
            )
        )
    table = Table(title="Convex reconstruction vs surrogate gradients (deployed integer models)")
    for col in ("task", "method", "test acc", "val acc", "feature neurons kept", "wall time"):
        table.add_column(col, justify="right" if col not in ("task", "method") else "left")
    with tempfile.TemporaryDirectory() as tmp:
        for name, base in tasks:
            for method in args.methods.split(","):
                run = ConvexRun(**{**vars(base), "method": method})
                start = time.perf_counter()
                final = run_method(run, f"{tmp}/{name}-{method}".replace(" ", "_"), progress=False)
                seconds = time.perf_counter() - start
                row = (
                    name,
                    method,
                    f"{final['test_acc']:.4f}",
                    f"{final['val_acc']:.4f}",
                    f"{final['active_features']} / {final['features']}",
                    f"{seconds:.0f} s",
                )
                print(" | ".join(row), flush=True)
                table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
