"""Rounding errors of a frozen graph, per layer (the numbers in docs/arithmetic.md, section 4).

    python benchmarks/arithmetic_error.py [MODEL] [--target int4-core]

For every LIF layer: fraction bits F, decay multiplier M and |beta - M/2^k|, and the
largest relative error that rounding theta/a_c and b_c/a_c to integers causes.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    from qsnn_deploy.app.demo import SHIPPED_MODEL
    from qsnn_deploy.frontends.torch_qat import freeze
    from qsnn_deploy.training.checkpoint import build_model, load_checkpoint

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--target", default="int4-core")
    args = parser.parse_args()
    graph = freeze(build_model(load_checkpoint(args.model)), args.target)
    print(
        f"{'layer':6s} {'F':>3s} {'M':>7s} {'|beta-M/2^k|':>13s} {'theta_int min..max':>22s} {'max rel. theta err':>19s} {'max |bias| err (A units)':>25s}"
    )
    for (name, lif), meta in zip(graph.lif_layers(), graph.metadata["layers"]):
        theta = lif.threshold.values.astype(float)
        scale = 2.0**lif.input_shift
        rel = 1.5 / theta.min()  # B rounds by <= 1/2 LSB and Theta - B floors by < 1 LSB (freeze.py)
        print(
            f"{name:6s} {lif.input_shift:3d} {lif.decay_mul:7d} {abs(meta['beta'] - lif.decay):13.2e} "
            f"{int(theta.min()):>10d}..{int(theta.max()):<10d} {rel:19.2e} {0.5 / scale:25.3g}"
        )


if __name__ == "__main__":
    main()
