"""Every registered export format writes atomically: a failed write leaves the old output and no debris."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from graph_factory import make_graph

from qsnn_deploy.exporters import FORMATS, export


def _graph_for(fmt: str):
    """A small graph the format can express: Xylo takes current-based chains, the others the int4 conv net."""
    if fmt == "xylo":
        from xylo_graphs import cuba_graph

        return cuba_graph([16, 8, 4], np.random.default_rng(0))
    return make_graph(2)


def _old_output(path: Path, directory: bool) -> None:
    if directory:
        path.mkdir()
        (path / "old.txt").write_text("old")
    else:
        path.write_text("old")


def _is_old(path: Path, directory: bool) -> bool:
    if directory:
        return sorted(p.name for p in path.iterdir()) == ["old.txt"] and (path / "old.txt").read_text() == "old"
    return path.read_bytes() == b"old"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_failed_publish_keeps_the_old_output(fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = FORMATS[fmt]
    dest = tmp_path / ("out" + spec.suffix)
    _old_output(dest, spec.directory)

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("qsnn_deploy.atomic.os.replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        export(_graph_for(fmt), fmt, dest, timesteps=3)
    assert _is_old(dest, spec.directory)
    assert sorted(os.listdir(tmp_path)) == [dest.name]  # no temporary file or folder left behind


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_successful_export_replaces_the_old_output(fmt: str, tmp_path: Path) -> None:
    spec = FORMATS[fmt]
    dest = tmp_path / ("out" + spec.suffix)
    _old_output(dest, spec.directory)
    written = export(_graph_for(fmt), fmt, dest, timesteps=3)
    assert Path(written) == dest
    assert not _is_old(dest, spec.directory)
    assert sorted(os.listdir(tmp_path)) == [dest.name]
