"""End to end with the library API: load a checkpoint, freeze it, export it, simulate it.

    python examples/end_to_end.py [MODEL] [--out DIR] [--limit N]

MODEL defaults to the shipped Fashion-MNIST int4 model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qsnn_deploy.app.demo import SHIPPED_MODEL
from qsnn_deploy.data.loaders import load_fmnist_test_or_subset
from qsnn_deploy.exporters import export
from qsnn_deploy.exporters.json_graph import read_graph_json
from qsnn_deploy.frontends.torch_qat import freeze
from qsnn_deploy.sim import simulate
from qsnn_deploy.targets import load_target
from qsnn_deploy.targets.rules import check_target
from qsnn_deploy.training.checkpoint import build_model, load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--out", type=Path, default=Path("example-out"))
    parser.add_argument("--limit", type=int, default=64)
    args = parser.parse_args()

    # 1. load the trained QAT checkpoint (weights_only: no code in the file runs)
    ckpt = load_checkpoint(args.model)
    model = build_model(ckpt)

    # 2. freeze it into the integer graph of a target core, and check the core's limits
    target = load_target("int4-core")
    graph = freeze(model, target)
    check_target(graph, target)

    # 3. export: the integer JSON graph (read back to show the round trip) and plain ONNX
    json_path = export(graph, "json", args.out / "model.json", target=target, timesteps=ckpt.model_config.timesteps)
    export(graph, "onnx", args.out / "model.onnx", target=target, timesteps=ckpt.model_config.timesteps)
    graph_back, _, _ = read_graph_json(json_path)
    if graph_back != graph:
        raise SystemExit("JSON round trip changed the graph")

    # 4. simulate bit-accurately on a few test images
    split, source = load_fmnist_test_or_subset(limit=args.limit)
    result = simulate(graph, split.x, ckpt.model_config.timesteps, target=target)
    accuracy = float((result.predictions == split.y).mean())
    print(f"{source}: {len(split)} images, integer accuracy {accuracy:.2%}")
    for layer in result.layers:
        print(
            f"  {layer.name:6s} neurons {layer.neurons:6d} spikes {layer.spikes:10,d} SynOps {layer.synops:12,d} "
            f"memory {layer.memory_bits / 8 / 1024:6.1f} KiB"
        )


if __name__ == "__main__":
    main()
