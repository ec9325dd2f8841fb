"""The Xylo targets through the CLI: listing, export --format xylo, named limit failures, --ignore-limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from xylo_graphs import cuba_graph

from qsnn_deploy.app.cli import cli
from qsnn_deploy.exporters.json_graph import export_graph_json
from qsnn_deploy.exporters.xylo_export import load_xylo_spec
from qsnn_deploy.ir.dtypes import IntType

ASSET = Path(__file__).resolve().parents[2] / "qsnn_deploy" / "assets" / "fmnist_int4.pt"


def _graph_json(tmp_path: Path, n_out: int = 10) -> Path:
    graph = cuba_graph([16, 40, 24, n_out], np.random.default_rng(1), shifts=(3, 4, 4), input_type=IntType(4, signed=False))
    return export_graph_json(graph, tmp_path / "cuba.graph.json", target="xylo-imu", timesteps=28)


def test_targets_lists_both_xylo_chips(runner) -> None:
    out = runner.invoke(cli, ["targets"]).output
    assert "xylo-imu [chip syns63300]" in out and "xylo-audio2 [chip syns61201]" in out


def test_export_xylo_writes_the_spec_and_refuses_ten_outputs_on_audio2(runner, tmp_path: Path) -> None:
    model = _graph_json(tmp_path)
    ok = runner.invoke(cli, ["export", str(model), "--format", "xylo", "--target", "xylo-imu", "-o", str(tmp_path / "imu.npz")])
    assert ok.exit_code == 0, ok.output
    chip, kwargs, _ = load_xylo_spec(tmp_path / "imu.npz")
    assert chip == "syns63300" and kwargs["weights_rec"].shape == (64, 64, 1) and kwargs["weights_out"].shape == (64, 10)
    bad = runner.invoke(cli, ["export", str(model), "--format", "xylo", "--target", "xylo-audio2", "-o", str(tmp_path / "a2.npz")])
    assert bad.exit_code == 6 and "output layer 'lif3' has neurons 10 > limit 8 (excess 2)" in bad.output
    assert not (tmp_path / "a2.npz").exists()
    anyway = runner.invoke(
        cli, ["export", str(model), "--format", "xylo", "--target", "xylo-audio2", "-o", str(tmp_path / "a2.npz"), "--ignore-limits"]
    )
    assert anyway.exit_code == 0 and load_xylo_spec(tmp_path / "a2.npz")[0] == "syns61201"


def test_the_conv_net_does_not_fit_xylo_imu_and_says_by_how_much(runner) -> None:
    res = runner.invoke(cli, ["simulate", str(ASSET), "--target", "xylo-imu", "--limit", "2", "--quiet"])
    assert res.exit_code == 6
    for part in (
        "layer 'conv1' is Conv2d: not mappable",
        "hidden neurons 3,328 > limit 496 (excess 2,832)",
        "input channels 784 > limit 16",
    ):
        assert part in res.output, res.output


def test_json_golden_of_a_current_based_graph_points_to_the_xylo_export(tmp_path: Path) -> None:
    import pytest

    from qsnn_deploy.errors import ExportError

    graph = cuba_graph([16, 8, 4], np.random.default_rng(0), input_type=IntType(4, signed=False))
    with pytest.raises(ExportError, match="use --format xylo --golden N"):
        export_graph_json(graph, tmp_path / "g.json", target="xylo-imu", timesteps=4, golden=np.zeros((1, 4, 16), np.int64))


def test_our_core_rejects_current_based_neurons_by_name() -> None:
    import pytest

    from qsnn_deploy.errors import TargetError
    from qsnn_deploy.targets import load_target
    from qsnn_deploy.targets.checks import check_graph

    graph = cuba_graph([16, 8, 4], np.random.default_rng(0), weight_range=3)
    with pytest.raises(TargetError, match="layer 'lif1' is a current-based CubaLIF, target int4-core computes plain LIF neurons"):
        check_graph(graph, load_target("int4-core"))


def test_simulate_split_runs_current_based_graphs_and_counts_per_layer() -> None:
    from qsnn_deploy.sim import cuba_chain, simulate_split

    graph = cuba_graph([16, 20, 12, 5], np.random.default_rng(4), shifts=(3, 4, 4), dash_range=(1, 6), threshold_range=(200, 2000))
    x = np.random.default_rng(5).integers(0, 16, size=(7, 10, 16))
    y = np.arange(7) % 5
    report = simulate_split(graph, x, y, 10, batch_size=3, progress=False)
    run = cuba_chain.run(graph, x, 10)
    assert report.samples == 7 and np.array_equal(report.counts, run.output_counts)
    assert report.correct == int((run.output_counts.argmax(axis=1) == y).sum())
    assert [layer.spikes for layer in report.layers] == [int(c.sum()) for c in run.neuron_counts.values()]
    assert report.layers[0].synops == int(np.minimum(x, 15).sum()) * 20  # every input event reaches all 20 neurons
