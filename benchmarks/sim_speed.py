"""Inference speed: the integer simulator's fast backend vs snnTorch's float per-step loop.

The Fashion-MNIST QSNN (conv 1->16 k5, sum pool 2, LIF; conv 16->64 k5, sum pool 2, LIF;
flatten; linear 1024->10; LIF) at T=100. A random-init ``QSNN(ModelConfig())`` in eval mode
(or a trained checkpoint with ``--checkpoint``) is frozen for int4-core, and in the same run,
on the same Fashion-MNIST test images (synthetic if the data set is not installed), it times

(a) ``model.forward_reference(x)`` under ``torch.no_grad()``: the paper's per-step loop over
    snnTorch ``Leaky`` with Brevitas layers, the float model the integer graph comes from;
(b) ``simulate(graph, x, T)`` with the fast backend (bit-exact integer arithmetic).

It prints samples/s of both and their ratio, checks on a subset that the fast backend equals
the reference backend bit for bit (every spike, counts and statistics), SynOps/s, and how
close the fast backend runs to a dense-BLAS bound: the time its torch/BLAS calls alone take
on the same shapes (so the LIF kernels and glue are the gap). Run it as::

    python benchmarks/sim_speed.py [--samples 1024] [--batch-size 256] [--float-samples 256] [--check 8]

Timings share the CPU with whatever else runs; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _timed(fn, repeats: int = 1):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=100)
    parser.add_argument("--samples", type=int, default=1024, help="images for the fast-backend throughput")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--float-samples",
        type=int,
        default=256,
        help="images for the snnTorch comparison (one batch for both, as the fast backend's default)",
    )
    parser.add_argument("--check", type=int, default=8, help="images for the fast == reference check")
    parser.add_argument("--checkpoint", default=None, help="a trained checkpoint instead of the random-init model")
    args = parser.parse_args()

    from qsnn_deploy.app.perf import ALLOCATOR_ENV

    if not all(os.environ.get(k) == v for k, v in ALLOCATOR_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **ALLOCATOR_ENV})

    import numpy as np
    import torch

    from qsnn_deploy.data.loaders import load_split
    from qsnn_deploy.errors import DataError
    from qsnn_deploy.sim import fast_plan, simulate
    from qsnn_deploy.training.config import ModelConfig

    steps = args.timesteps
    if args.checkpoint:
        from qsnn_deploy.app.loading import load_deployable, with_timesteps

        dep = with_timesteps(load_deployable(args.checkpoint, target="int4-core"), steps)
        model, graph, source = dep.model.eval(), dep.graph, f"checkpoint {args.checkpoint}"
    else:
        from qsnn_deploy.frontends.torch_qat import freeze
        from qsnn_deploy.training.model import QSNN

        torch.manual_seed(0)
        model = QSNN(ModelConfig(timesteps=steps)).eval()
        graph, source = freeze(model, "int4-core"), "random-init QSNN(ModelConfig()), frozen for int4-core"
    try:
        split, data = load_split("fmnist", "test", limit=args.samples), "Fashion-MNIST test images"
    except DataError:
        split, data = load_split("synthetic", "test", limit=args.samples), "synthetic images (Fashion-MNIST not installed)"
    x = split.x[: args.samples]
    n_float = min(args.float_samples, len(x))
    print(f"model: {source}; T={steps}; data: {len(x)} {data}")
    print(f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (before)")

    # warm-up: Numba compiles or loads its kernels, oneDNN creates its primitives
    simulate(graph, x[:4], steps)
    with torch.no_grad():
        model.forward_reference(torch.from_numpy(x[:2]))

    # (a) snnTorch float per-step loop vs (b) fast backend, same images, one batch each
    xf = x[:n_float]
    with torch.no_grad():
        t_float, spikes = _timed(lambda: model.forward_reference(torch.from_numpy(xf)))
    t_same, res_same = _timed(lambda: simulate(graph, xf, steps), repeats=2)
    float_pred = spikes.sum(0).argmax(-1).numpy()
    print(f"\n(a) snnTorch forward_reference : {n_float / t_float:9.1f} samples/s  ({n_float} images, one batch, {t_float:.2f} s)")
    print(f"(b) simulate, fast backend     : {n_float / t_same:9.1f} samples/s  (same images and batch, {t_same:.3f} s)")
    print(f"    ratio fast / snnTorch      : {t_float / t_same:9.1f} x  (goal >= 4x)")
    print(f"    float vs integer predictions agree on {np.mean(float_pred == res_same.predictions):.1%} of these images")

    # throughput over all samples in batches
    t0 = time.perf_counter()
    totals = None
    for start in range(0, len(x), args.batch_size):
        r = simulate(graph, x[start : start + args.batch_size], steps)
        totals = r.layers if totals is None else [a.merged(b) for a, b in zip(totals, r.layers)]
    t_all = time.perf_counter() - t0
    synops = sum(layer.synops for layer in totals)
    rates = ", ".join(f"{layer.name} {layer.spikes / (layer.neurons * len(x) * steps):.1%}" for layer in totals)
    print(
        f"\nfast backend, {len(x)} images in batches of {args.batch_size}: {len(x) / t_all:.1f} samples/s "
        f"({t_all:.2f} s); spike rates {rates}"
    )
    print(f"    SynOps: {synops / len(x):,.0f} per sample, {synops / t_all / 1e9:.2f} G SynOps/s")

    # dense-BLAS bound: the fast backend's own torch/BLAS calls on the same shapes, nothing else
    batch = min(args.batch_size, len(x))
    blas_time, macs = _blas_bound(fast_plan._plan(graph), x[:batch], steps)
    per_batch = t_all * batch / len(x)
    print(
        f"    dense-BLAS bound: {batch / blas_time:.1f} samples/s ({macs / batch / 1e6:.1f} M dense MACs per sample at "
        f"{macs / blas_time / 1e9:.1f} GMAC/s); the fast backend runs at {blas_time / per_batch:.0%} of it"
    )

    # bit-exactness on a subset: every spike, the counts and the statistics
    k = min(args.check, len(x))
    t_ref, ref = _timed(lambda: simulate(graph, x[:k], steps, backend="reference", record=True))
    fst = simulate(graph, x[:k], steps, backend="fast", record=True)
    same = (
        np.array_equal(ref.counts, fst.counts)
        and ref.layers == fst.layers
        and all(np.array_equal(ref.spikes[n], fst.spikes[n]) for n in ref.spikes)
    )
    print(
        f"\nfast == reference on {k} images (all spikes at all {steps} steps, counts, stats): {'yes' if same else 'NO'}"
        f"  (reference backend: {k / t_ref:.2f} samples/s)"
    )
    print(f"load average {os.getloadavg()[0]:.1f} (after)")
    if not same:
        sys.exit(1)


def _blas_bound(plan, x, steps: int) -> tuple[float, int]:
    """Seconds the segment's torch/BLAS calls take for one batch of ``x``, and their MACs.

    Feeds random 0/1 spikes of the right shapes (the values do not change dense BLAS time);
    the static first segment runs once per batch, the others once per step.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    batch = len(x)
    total_t, total_macs = 0.0, 0
    rng = np.random.default_rng(0)
    h = torch.from_numpy(x.astype(np.float32))
    for seg in plan:
        rows = batch if seg.static else batch * steps
        if not seg.static:
            shape = h.shape[1:]
            h = torch.from_numpy((rng.random((rows, *shape)) < 0.1).astype(np.float32))
            if h.dim() == 4:
                h = h.contiguous(memory_format=torch.channels_last)

        def run(t=h, seg=seg):
            macs = 0
            for st in seg.stages:
                if st.kind == "conv":
                    t = F.conv2d(t, st.weight, stride=st.stride, padding=st.padding)
                    macs += t.numel() * int(np.prod(st.weight.shape[1:]))
                elif st.kind == "pool":
                    t = F.avg_pool2d(t, st.kernel, st.stride, divisor_override=1)
                elif st.kind == "flatten":
                    t = t.flatten(1)
                elif st.kind == "flatten_nhwc":
                    t = t.permute(0, 2, 3, 1).reshape(t.shape[0], -1)
                else:
                    macs += t.shape[0] * st.weight.size
                    t = torch.from_numpy(np.matmul(t.numpy(), st.weight))
            return t, macs

        with torch.no_grad():
            run()
            dt, (_, macs) = _timed(run, repeats=2)
        total_t += dt
        total_macs += macs
        h = torch.zeros((1, *seg.shape))  # only its shape matters: the next segment's input
    return total_t, total_macs


if __name__ == "__main__":
    main()
