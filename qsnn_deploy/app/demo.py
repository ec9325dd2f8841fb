"""``qsnn-deploy demo``: the whole flow on the shipped Fashion-MNIST int4 model.

Load -> freeze for int4-core -> check the target rules -> export every format -> simulate
-> parity against the float model, on the Fashion-MNIST test set when it is installed, else on
the 1,000-image subset shipped with the package. The default model is ``DEMO_MODEL``: the
shipped QAT model with its readout refit by ``sg-cvx`` (90.91 % deployed; docs/results.md);
its float model is the QAT conv layers under the refit integer readout.
"""

from __future__ import annotations

import time
from pathlib import Path

# SHIPPED_MODEL: the QAT model trained by examples/fmnist_int4/COMMAND (examples/fmnist_int4/model.pt
# links here); DEMO_MODEL: its sg-cvx refit. The public API holds both paths.
from qsnn_deploy import DEMO_MODEL, SHIPPED_MODEL  # noqa: F401 - SHIPPED_MODEL: the benchmarks' default
from qsnn_deploy.errors import QsnnError

EXPORTS = {"json": "model.json", "onnx": "model.onnx", "qonnx": "model.qonnx.onnx", "nir": "model.nir"}


def run_demo(
    out_dir: str | Path,
    *,
    model_path: str | Path | None = None,
    limit: int | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Run the demo into ``out_dir``; return the parity document."""
    from rich.console import Console

    from qsnn_deploy.app.loading import float_model, load_deployable
    from qsnn_deploy.app.parity import run_parity
    from qsnn_deploy.app.reports import print_parity, print_simulation, simulation_json, write_json
    from qsnn_deploy.data.loaders import load_fmnist_test_or_subset
    from qsnn_deploy.exporters import export
    from qsnn_deploy.targets.rules import check_target

    console = Console()
    t0 = time.perf_counter()
    model_path = Path(model_path) if model_path else DEMO_MODEL
    if not model_path.is_file():
        raise QsnnError(f"demo model not found: {model_path}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]1/4 freeze[/] {model_path} for int4-core")
    dep = load_deployable(model_path, target="int4-core")
    check_target(dep.graph, dep.target)
    split, source = load_fmnist_test_or_subset(data_dir, limit)
    console.print(f"[bold]2/4 export[/] into {out}/")
    for fmt, name in EXPORTS.items():
        golden = split.x[:4] if fmt == "json" else None
        path = export(dep.graph, fmt, out / name, target=dep.target, timesteps=dep.timesteps, golden=golden)
        console.print(f"    {fmt:6s} {path} ({path.stat().st_size / 1024:.0f} KiB)")
    console.print(f"[bold]3/4 simulate[/] on int4-core and run the float model beside it: {source}")
    # one pass does both: parity runs the integer simulation and keeps its report
    report = run_parity(float_model(dep), dep.graph, split.x, split.y, target=dep.target, progress=progress, requested=limit)
    sim_doc = simulation_json(report.simulation, dep, requested=limit)
    print_simulation(sim_doc)
    write_json(out / "simulate.json", sim_doc)
    console.print("[bold]4/4 parity[/]: float model vs integer simulation")
    doc = report.to_json()
    doc["data"] = source
    print_parity(doc)
    write_json(out / "parity.json", doc)
    console.print(f"done in {time.perf_counter() - t0:.0f} s; reports in {out}/simulate.json and {out}/parity.json")
    return doc
