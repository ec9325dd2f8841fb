"""A process killed (SIGKILL) while writing leaves the old file or the complete new one.

Writers run in ``python -c`` subprocesses and are killed at random moments (seeded, so a
failure can be replayed) or the moment their temporary file appears:

- ``qsnn_deploy.atomic`` writing self-checking payloads, fast and in slow chunks;
- the real writers, ``save_checkpoint`` (torch.save) and ``export_graph_json``, in a loop;
- the real CLI: ``qsnn-deploy export --format json --force`` over an existing file, and
  ``qsnn-deploy train --data synthetic`` writing its checkpoints every epoch.

Afterwards the destination is absent, the old content, or a complete valid file (a payload
whose checksum matches; a checkpoint ``load_checkpoint`` reads; a graph document
``read_graph_json`` reads). A kill can leave the temporary file ``.<name>.<random>.tmp``
beside the destination (nothing runs to remove it): that is allowed, and documented in
docs/cli.md; it never takes the destination's name.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "QSNN_DEPLOY_NO_REEXEC": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}


# --- helpers ------------------------------------------------------------------------------------


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process we started (and its process group: anything it spawned)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate(timeout=30)


def wait_for_line(proc: subprocess.Popen, expected: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == expected:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"child exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
    raise AssertionError(f"no {expected!r} from the child within {timeout} s")


def temp_files(folder: Path, name: str | None = None) -> list[str]:
    """Temporary files of atomic writes to ``name`` (any name if None) in ``folder``."""
    pattern = rf"\.{re.escape(name)}\..+\.tmp" if name else r"\..+\..+\.tmp"
    return [p.name for p in folder.iterdir() if re.fullmatch(pattern, p.name)]


def assert_only_expected_files(folder: Path, names: set[str]) -> None:
    """Besides ``names`` the folder holds at most the atomic writers' temporary files."""
    for p in folder.iterdir():
        if p.name in names:
            continue
        assert any(re.fullmatch(rf"\.{re.escape(n)}\..+\.tmp", p.name) for n in names), f"unexpected file {p.name}"


def kill_when_temp_appears(proc: subprocess.Popen, folder: Path, name: str | None, timeout: float) -> bool:
    """Poll for a new ``.name.*.tmp`` and SIGKILL the moment it exists; True if caught mid-write.

    Otherwise the kill comes at ``timeout`` (or the process has ended by itself)."""
    deadline = time.monotonic() + timeout
    before = set(temp_files(folder, name))
    while time.monotonic() < deadline and proc.poll() is None:
        if set(temp_files(folder, name)) - before:
            kill(proc)
            return True
        time.sleep(0.0005)
    kill(proc)
    return False


# --- 1. qsnn_deploy.atomic itself ----------------------------------------------------------------------

PAYLOAD_CHILD = r"""
import hashlib, sys, time
from qsnn_deploy.atomic import write_atomic, write_bytes_atomic

dest, mode = sys.argv[1], sys.argv[2]

def payload(i):
    body = (b"%08d" % i) * (8192 if mode == "slow" else 65536)
    head = b"v%d\n" % i
    return head + body + b"\n" + hashlib.sha256(head + body).hexdigest().encode() + b"\n"

def slow_writer(data):
    def write(fh):
        for k in range(0, len(data), 4096):
            fh.write(data[k:k + 4096])
            fh.flush()
            time.sleep(0.0005)
    return write

i = 0
while True:
    i += 1
    data = payload(i)
    if mode == "slow":
        write_atomic(dest, slow_writer(data))
    else:
        write_bytes_atomic(dest, data)
    if i == 1:
        print("ready", flush=True)
"""

OLD = b"old content\n"


def check_payload(path: Path) -> str:
    """'old', or 'new' after checking the checksum; raises on a partial file."""
    data = path.read_bytes()
    if data == OLD:
        return "old"
    head, rest = data.split(b"\n", 1)
    body, digest, end = rest.rsplit(b"\n", 2)
    assert end == b"" and re.fullmatch(rb"v\d+", head), "not a payload"
    assert hashlib.sha256(head + b"\n" + body).hexdigest().encode() == digest, f"partial file: {len(data)} bytes"
    return "new"


@pytest.mark.parametrize("mode", ["fast", "slow"])
def test_atomic_writes_survive_sigkill(tmp_path: Path, mode: str) -> None:
    rng = random.Random(f"atomic-{mode}")
    outcomes = []
    for trial in range(6):
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        dest = folder / "data.bin"
        dest.write_bytes(OLD)
        proc = start([sys.executable, "-c", PAYLOAD_CHILD, str(dest), mode], folder)
        wait_for_line(proc, "ready")
        time.sleep(rng.uniform(0.0, 0.25))
        kill(proc)
        outcomes.append(check_payload(dest))
        assert_only_expected_files(folder, {"data.bin"})
        assert len(temp_files(folder, "data.bin")) <= 1
        # the next write is unaffected by a temp file a kill left behind
        from qsnn_deploy.atomic import write_bytes_atomic

        write_bytes_atomic(dest, OLD)
        assert check_payload(dest) == "old"
    assert "new" in outcomes  # the first write completed before "ready": never the old one


def test_atomic_path_failure_keeps_old_file(tmp_path: Path) -> None:
    """An exception inside the writer (the in-process analogue) leaves no temp file at all."""
    from qsnn_deploy.atomic import atomic_path

    dest = tmp_path / "x.bin"
    dest.write_bytes(OLD)
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert dest.read_bytes() == OLD and sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


# --- 2. the real writers: torch.save checkpoints and graph JSON ------------------------------------------

WRITERS_CHILD = r"""
import dataclasses, sys
import torch
from graph_factory import make_graph
from qsnn_deploy.training.checkpoint import Checkpoint, save_checkpoint
from qsnn_deploy.training.config import ModelConfig
from qsnn_deploy.exporters.json_graph import export_graph_json

ckpt_path, json_path = sys.argv[1], sys.argv[2]
graph = make_graph(2, size=8, conv_channels=8, n_out=10)
i = 0
while True:
    i += 1
    state = {"w": torch.full((256, 256), float(i)), "v": torch.arange(4096, dtype=torch.float32) * i}
    save_checkpoint(Checkpoint(ModelConfig(timesteps=i), state), ckpt_path)
    export_graph_json(dataclasses.replace(graph, metadata={"write": i}), json_path, target="int4-core", timesteps=i)
    if i == 1:
        print("ready", flush=True)
"""


def test_real_writers_survive_sigkill(tmp_path: Path) -> None:
    import torch

    from qsnn_deploy.exporters.json_graph import read_graph_json
    from qsnn_deploy.training.checkpoint import load_checkpoint

    rng = random.Random("writers")
    caught = []
    for trial, moment in enumerate(["model.pt", "graph.json"]):  # (random moments: the tests above)
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        ckpt, doc = folder / "model.pt", folder / "graph.json"
        proc = start([sys.executable, "-c", WRITERS_CHILD, str(ckpt), str(doc)], folder)
        wait_for_line(proc, "ready")
        # the moment torch.save / the JSON writer has created its temp file (a write every few ms)
        caught.append(kill_when_temp_appears(proc, folder, moment, timeout=rng.uniform(1.0, 3.0)))
        loaded = load_checkpoint(ckpt)  # complete: a partial zip would raise CheckpointError
        i = loaded.model_config.timesteps
        assert torch.equal(loaded.state_dict["w"], torch.full((256, 256), float(i)))  # one consistent version
        assert torch.equal(loaded.state_dict["v"], torch.arange(4096, dtype=torch.float32) * i)
        graph, _, meta = read_graph_json(doc)  # parses and validates
        assert graph.metadata["write"] == meta["timesteps"] in (i - 1, i)  # written right after the checkpoint
        assert_only_expected_files(folder, {"model.pt", "graph.json"})
    assert any(caught), "no kill landed inside a write: the polling is too slow here"


# --- 3. the real CLI ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from qsnn_deploy.training.checkpoint import Checkpoint, model_state, save_checkpoint
    from qsnn_deploy.training.config import ModelConfig
    from qsnn_deploy.training.model import QSNN

    cfg = ModelConfig(timesteps=4)
    return save_checkpoint(Checkpoint(cfg, model_state(QSNN(cfg))), tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def test_cli_export_killed_mid_write(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """Kill ``export --force`` the moment its temporary file appears: the old graph stays."""
    from graph_factory import make_graph

    from qsnn_deploy.exporters.json_graph import export_graph_json, read_graph_json

    out = tmp_path / "graph.json"
    old_graph = make_graph(3)
    export_graph_json(old_graph, out, target="int4-core", timesteps=4)
    old = out.read_bytes()
    proc = start(
        [sys.executable, "-m", "qsnn_deploy.app.cli", "export", str(tiny_checkpoint), "--format", "json", "-o", str(out), "--force"],
        tmp_path,
    )
    caught = kill_when_temp_appears(proc, tmp_path, out.name, timeout=120)
    graph, _, _ = read_graph_json(out)  # old or new, complete and valid either way
    if caught:
        assert out.read_bytes() == old and graph == old_graph
    assert_only_expected_files(tmp_path, {out.name})


def test_cli_train_killed_while_saving(tmp_path: Path) -> None:
    """Kill ``train`` the moment it starts rewriting any output after its first checkpoint
    (a checkpoint, a plot, a log table), or at a random moment; every file stays whole."""
    import json

    from qsnn_deploy.training.checkpoint import load_checkpoint

    run = tmp_path / "run"
    proc = start(
        [
            sys.executable,
            "-m",
            "qsnn_deploy.app.cli",
            "train",
            "--out",
            str(run),
            "--data",
            "synthetic",
            "--timesteps",
            "2",
            "--batch-size",
            "32",
            "--limit-train",
            "64",
            "--limit-test",
            "32",
            "--epochs",
            "20",
            "--quiet",
        ],
        tmp_path,
    )
    deadline = time.monotonic() + 180
    while not (run / "last.pt").exists():
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 180 s"
        time.sleep(0.01)
    kill_when_temp_appears(proc, run, None, timeout=random.Random("train").uniform(1.0, 6.0))
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt.train_state is not None  # a complete resumable checkpoint
    load_checkpoint(run / "best.pt")
    if (run / "metrics.json").exists():
        json.loads((run / "metrics.json").read_text())
    for png in run.glob("*.png"):  # complete: signature first, IEND chunk last
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82"), png.name
    for table in run.glob("*.csv"):
        assert table.read_text().endswith("\n"), table.name
    assert_only_expected_files(
        run, {"best.pt", "last.pt", "metrics.csv", "metrics.json", "iterations.csv", "loss.png", "lr.png", "accuracy.png", "train.log"}
    )
