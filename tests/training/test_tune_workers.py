"""Several ``qsnn-deploy tune`` processes on one study: SQLite and a real PostgreSQL server.

Workers are real CLI subprocesses. Checked: every worker contributes, trial numbers and seeds
are unique (none duplicated), the study holds the trials asked for (none lost), a SIGKILLed
worker's trial ends failed (Optuna's heartbeat; never complete), Ctrl-C leaves no trial running
and the same command then continues the study.

The PostgreSQL server is Debian's (``initdb``/``pg_ctl`` of postgresql 15, installed by CI): a
throwaway cluster listening only on a Unix socket in a temporary folder (no TCP port to clash),
run as an unprivileged user when the tests run as root, removed afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "QSNN_DEPLOY_NO_REEXEC": "1", "PYTHONPATH": str(ROOT)}
TINY = ["--epochs-per-trial", "1", "--limit-train", "40", "--limit-test", "16", "--data", "synthetic", "--timesteps", "2", "--quiet"]
State = optuna.trial.TrialState


def start_worker(storage: str, log: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "qsnn_deploy.app.cli", "tune", "--study", "s", "--storage", storage, *TINY, *extra]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, env=ENV, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 180) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return log.read_text()


def trials(storage: str) -> list:
    """The study's trials; none while the worker is still creating the database and the study."""
    try:
        store = optuna.storages.RDBStorage(storage, skip_table_creation=True)  # the workers create the tables
        return optuna.load_study(study_name="s", storage=store).get_trials(deepcopy=False)
    except (KeyError, sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):
        return []


def wait_for_running_trial(storage: str, proc: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [t.number for t in trials(storage) if t.state == State.RUNNING and "worker" in t.user_attrs]
        if running:
            return running[0]
        assert proc.poll() is None, f"worker exited {proc.returncode} before running a trial"
        time.sleep(0.05)
    raise AssertionError(f"no running trial within {timeout} s")


def assert_study_consistent(storage: str, asked: int, workers: list[subprocess.Popen]) -> list:
    """None lost (``asked`` finished), none duplicated (unique numbers and seeds), every worker contributed."""
    ts = trials(storage)
    assert sorted(t.number for t in ts) == list(range(len(ts)))
    assert sorted(t.user_attrs["seed"] for t in ts) == list(range(len(ts)))
    assert not [t.number for t in ts if t.state == State.RUNNING]
    finished = [t for t in ts if t.state in (State.COMPLETE, State.PRUNED)]
    # each worker checks the total after its trial, so W workers can overshoot by W - 1
    assert asked <= len(finished) <= asked + len(workers) - 1
    contributors = {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in finished}
    assert contributors == {w.pid for w in workers}
    return ts


def test_sqlite_workers_survive_a_killed_worker(tmp_path):
    """A is SIGKILLed mid-trial; B and C then finish the study; A's trial is failed by the heartbeat, not counted."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    a = start_worker(url, tmp_path / "a.log", "--trials", "3", "--heartbeat", "1")
    killed = wait_for_running_trial(url, a)
    os.killpg(a.pid, signal.SIGKILL)
    a.wait()
    assert [t.state for t in trials(url) if t.number == killed] == [State.RUNNING]  # left running by the kill
    time.sleep(2.5)  # past the grace period (2 heartbeats) of the killed trial
    b = start_worker(url, tmp_path / "b.log", "--trials", "3", "--heartbeat", "1")
    c = start_worker(url, tmp_path / "c.log", "--trials", "3", "--heartbeat", "1")
    for proc, name in ((b, "b.log"), (c, "c.log")):
        output = finish(proc, tmp_path / name)
        assert proc.returncode == 0, output
    ts = assert_study_consistent(url, 3, [b, c])
    (dead,) = [t for t in ts if t.number == killed]
    assert dead.state == State.FAIL and "fail_reason" not in dead.user_attrs


def test_ctrl_c_leaves_the_study_consistent_and_the_rerun_continues(runner, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    proc = start_worker(url, tmp_path / "w.log", "--trials", "2")
    interrupted = wait_for_running_trial(url, proc)
    os.kill(proc.pid, signal.SIGINT)
    output = finish(proc, tmp_path / "w.log")
    assert proc.returncode == 130 and "interrupted: the running trial is recorded as failed" in output, output
    assert [t.state for t in trials(url) if t.number == interrupted] == [State.FAIL]
    assert not [t for t in trials(url) if t.state == State.RUNNING]
    from qsnn_deploy.app.cli import cli  # the rerun in this process: one worker start less

    res = runner.invoke(cli, ["tune", "--study", "s", "--storage", url, *TINY, "--trials", "2"])
    assert res.exit_code == 0 and "2 finished trials" in res.output, res.output
    assert len([t for t in trials(url) if t.state in (State.COMPLETE, State.PRUNED)]) == 2


# --- PostgreSQL ------------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL cluster on a Unix socket; yields its SQLAlchemy URL, then removes it."""
    bindir = _postgres_bin()
    if bindir is None or not (bindir / "pg_ctl").exists():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are missing; CI installs Debian's postgresql")
        pytest.skip("PostgreSQL server binaries not installed")
    root = Path(tempfile.mkdtemp(prefix="qsnn-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    data, sock = root / "data", root / "sock"

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)

    run("mkdir", str(sock))
    run(str(bindir / "initdb"), "-D", str(data), "-U", "qsnn", "--auth=trust", "--no-sync")
    opts = f"-k {sock} -c listen_addresses='' -c fsync=off"
    try:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "server.log"), "-w", "start")
        yield f"postgresql+psycopg2://qsnn@/postgres?host={sock}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_workers_share_one_study(postgres_url, tmp_path):
    workers = [start_worker(postgres_url, tmp_path / f"w{i}.log", "--trials", "4") for i in range(2)]
    for i, proc in enumerate(workers):
        output = finish(proc, tmp_path / f"w{i}.log")
        assert proc.returncode == 0, output
    assert_study_consistent(postgres_url, 4, workers)
