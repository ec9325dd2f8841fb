"""End to end with the library API: load a checkpoint, freeze it, export it, simulate it.

    python examples/end_to_end.py [MODEL] [--out DIR] [--limit N]

MODEL defaults to the shipped Fashion-MNIST int4 model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import qsnn_deploy as qd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=qd.SHIPPED_MODEL)
    parser.add_argument("--out", type=Path, default=Path("example-out"))
    parser.add_argument("--limit", type=int, default=64)
    args = parser.parse_args()

    # 1. load the trained QAT checkpoint (weights_only: no code in the file runs)
    model = qd.load_model(args.model)
    timesteps = model.config.timesteps

    # 2. freeze it into the integer graph of a target core, and check the core's limits
    target = qd.load_target("int4-core")
    graph = qd.freeze(model, target)
    qd.check_target(graph, target)

    # 3. export: the integer JSON graph (read back to show the round trip) and plain ONNX
    json_path = qd.export(graph, "json", args.out / "model.json", target=target, timesteps=timesteps)
    qd.export(graph, "onnx", args.out / "model.onnx", target=target, timesteps=timesteps)
    if qd.read_graph(json_path) != graph:
        raise SystemExit("JSON round trip changed the graph")

    # 4. the float model's own output spikes, then the bit-accurate integer simulation
    x, y = qd.load_test_images("fmnist", limit=args.limit)
    float_predictions = model.spikes(x, timesteps).sum(0).argmax(-1).numpy()
    result = qd.simulate(graph, x, timesteps, target=target)
    print(
        f"{len(y)} test images: float accuracy {(float_predictions == y).mean():.2%}, integer accuracy {(result.predictions == y).mean():.2%}"
    )
    for layer in result.layers:
        print(
            f"  {layer.name:6s} neurons {layer.neurons:6d} spikes {layer.spikes:10,d} SynOps {layer.synops:12,d} "
            f"memory {layer.memory_bits / 8 / 1024:6.1f} KiB"
        )


if __name__ == "__main__":
    main()
