"""Tests of qsnn_deploy.data.loaders: IDX loading, DVS framing through tonic, synthetic data, batching."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from idx_files import FMNIST_DIR, IDX_STEMS, idx_bytes, write_idx_folder  # noqa: F401

from qsnn_deploy.data import dvs as data_dvs
from qsnn_deploy.data import loaders as data
from qsnn_deploy.data.loaders import Split, iterate_batches, load_split, read_idx, train_val_split
from qsnn_deploy.errors import DataError


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to open a network connection fail the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    written = write_idx_folder(tmp_path, gz=gz)
    for split in ("train", "test"):
        s = load_split("fmnist", split, data_dir=tmp_path)
        images, labels = written[split]
        assert s.x.shape == (len(images), 1, 28, 28) and s.x.dtype == np.uint8
        assert s.y.dtype == np.int64 and s.num_classes == 10 and s.encoding == "static"
        np.testing.assert_array_equal(s.x[:, 0], images)
        np.testing.assert_array_equal(s.y, labels.astype(np.int64))
        assert len(s) == len(images)


def test_read_idx_other_dtype(tmp_path: Path) -> None:
    arr = np.arange(-6, 6, dtype=np.int32).reshape(3, 4) * 1000
    path = tmp_path / "ints-idx2"
    path.write_bytes(idx_bytes(arr, 0x0C))
    got = read_idx(path)
    np.testing.assert_array_equal(got, arr)
    assert got.dtype == np.int32 and got.dtype.isnative


def test_truncated_idx(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated") as info:
        load_split("fmnist", "test", data_dir=tmp_path)
    assert str(path) in str(info.value)


def test_truncated_gz(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError) as info:
        load_split("fmnist", "train", data_dir=tmp_path)
    assert str(path) in str(info.value)


def test_wrong_magic(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[2] = 0x42
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="magic") as info:
        load_split("fmnist", "test", data_dir=tmp_path)
    assert str(path) in str(info.value)


def test_label_count_mismatch(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, dtype=np.uint8)))
    with pytest.raises(DataError, match="3 labels"):
        load_split("fmnist", "test", data_dir=tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as info:
        load_split("fmnist", "train", data_dir=missing)
    assert str(missing) in str(info.value)
    with pytest.raises(DataError, match="--data-dir") as info:
        load_split("mnist", "test", data_dir=tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize(("name", "folder"), [("fmnist", "FashionMNIST"), ("mnist", "MNIST")])
def test_torchvision_layout(tmp_path: Path, name: str, folder: str) -> None:
    written = write_idx_folder(tmp_path / folder / "raw", gz=False)
    s = load_split(name, "test", data_dir=tmp_path)
    np.testing.assert_array_equal(s.x[:, 0], written["test"][0])
    np.testing.assert_array_equal(s.y, written["test"][1])


@pytest.mark.skipif(not FMNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split() -> None:
    s = load_split("fmnist", "test")
    assert s.x.shape == (10000, 1, 28, 28) and s.x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(s.y), np.full(10, 1000))
    assert s.x.max() == 255


def test_limit_is_seeded_subset(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=True, sizes={"train": 40, "test": 4})
    full = load_split("fmnist", "train", data_dir=tmp_path)
    a = load_split("fmnist", "train", data_dir=tmp_path, limit=10, seed=3)
    b = load_split("fmnist", "train", data_dir=tmp_path, limit=10, seed=3)
    c = load_split("fmnist", "train", data_dir=tmp_path, limit=10, seed=4)
    assert len(a) == 10
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    rows = {full.x[i].tobytes(): i for i in range(len(full))}
    picked = [rows[img.tobytes()] for img in a.x]
    np.testing.assert_array_equal(a.y, full.y[picked])
    assert len(load_split("fmnist", "train", data_dir=tmp_path, limit=1000)) == 40


# ----------------------------------------------------------------------------- DVS

DVS_T = 8  # frames kept in the DVS tests (8 x 5 ms)


def make_events(rng: np.random.Generator, n: int, t_start_ms: int, t_end_ms: int) -> np.ndarray:
    """Random DVS events as tonic's DVSGesture stores them: (n, 4) x, y, p, t[ms], sorted by t."""
    t = np.sort(rng.integers(t_start_ms, t_end_ms + 1, size=n))
    t[0], t[-1] = t_start_ms, t_end_ms
    return np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), t], axis=1).astype(np.int64)


def reference_frames(events: np.ndarray, timesteps: int) -> np.ndarray:
    """Bin events with NumPy alone: 4x4 pixel pooling, 5 ms bins from the first event.

    Like tonic's ToFrame(time_window=...), a trailing incomplete bin is dropped (but a
    recording shorter than one bin still gives one bin).
    """
    x, y, p = events[:, 0] // 4, events[:, 1] // 4, events[:, 2]
    t_us = events[:, 3] * 1000
    n_bins = max((t_us[-1] - t_us[0] - 5000) // 5000 + 1, 1)
    b = (t_us - t_us[0]) // 5000
    keep = b < min(n_bins, timesteps)
    out = np.zeros((timesteps, 2, 32, 32), dtype=np.uint16)
    np.add.at(out, (b[keep], p[keep], y[keep], x[keep]), 1)
    return out


def make_dvs_tree(root: Path, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Write a tiny DVSGesture tree in tonic's layout; return {split: {relative path: events}}."""
    rng = np.random.default_rng(seed)
    layout = {
        "train": {"user01_fluorescent": [0, 1, 2], "user02_led": [0, 10]},
        "test": {"user24_led": [5, 3]},
    }
    written: dict[str, dict[str, np.ndarray]] = {}
    for split, users in layout.items():
        folder = root / "DVSGesture" / data.DVS_FOLDERS[split]
        written[split] = {}
        for user, labels in users.items():
            (folder / user).mkdir(parents=True)
            for k, label in enumerate(labels):
                # alternate long recordings (truncated to DVS_T) and short ones (zero-padded)
                end = 3 + (200 if k % 2 == 0 else 22)
                events = make_events(rng, 400, 3, end)
                np.save(folder / user / f"{label}.npy", events)
                written[split][f"{user}/{label}.npy"] = events
    return written


def test_dvs_frames_match_numpy_binning(tmp_path: Path, no_network: None) -> None:
    written = make_dvs_tree(tmp_path)
    s = load_split("dvs", "train", data_dir=tmp_path, timesteps=DVS_T)
    assert s.x.shape == (5, DVS_T, 2, 32, 32) and s.x.dtype == np.uint16
    assert s.encoding == "frames" and s.num_classes == 11
    np.testing.assert_array_equal(s.y, [0, 1, 2, 0, 10])  # sorted by user folder, then label
    events = written["train"]["user01_fluorescent/1.npy"]  # short recording: zero-padded
    np.testing.assert_array_equal(s.x[1], reference_frames(events, DVS_T))
    assert s.x[1, -1].sum() == 0 and s.x[1, 0].sum() > 0
    events = written["train"]["user02_led/10.npy"]  # long recording: truncated
    np.testing.assert_array_equal(s.x[4], reference_frames(events, DVS_T))
    test = load_split("dvs", "test", data_dir=tmp_path / "DVSGesture", timesteps=DVS_T)
    np.testing.assert_array_equal(test.y, [3, 5])
    np.testing.assert_array_equal(test.x[1], reference_frames(written["test"]["user24_led/5.npy"], DVS_T))


def test_dvs_cache(tmp_path: Path, no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dvs_tree(tmp_path)
    cache = tmp_path / "DVSGesture" / f"qsnn_frames_train_T{DVS_T}.npz"
    limited = load_split("dvs", "train", data_dir=tmp_path, timesteps=DVS_T, limit=2, seed=1)
    assert len(limited) == 2 and not cache.exists()  # a limited load frames only its subset
    full = load_split("dvs", "train", data_dir=tmp_path, timesteps=DVS_T)
    assert cache.is_file()

    def fail(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("framed again despite a valid cache")

    with monkeypatch.context() as m:
        m.setattr(data_dvs, "_frame_sample", fail)
        again = load_split("dvs", "train", data_dir=tmp_path, timesteps=DVS_T)
        cached_limited = load_split("dvs", "train", data_dir=tmp_path, timesteps=DVS_T, limit=2, seed=1)
    np.testing.assert_array_equal(again.x, full.x)
    np.testing.assert_array_equal(again.y, full.y)
    np.testing.assert_array_equal(cached_limited.x, limited.x)
    np.testing.assert_array_equal(cached_limited.y, limited.y)
    # a changed sample file invalidates the cache
    sample = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent" / "0.npy"
    np.save(sample, make_events(np.random.default_rng(9), 50, 0, 30))
    changed = load_split("dvs", "train", data_dir=tmp_path, timesteps=DVS_T)
    np.testing.assert_array_equal(changed.x[0], reference_frames(np.load(sample), DVS_T))


def test_dvs_missing(tmp_path: Path, no_network: None) -> None:
    with pytest.raises(DataError, match="DVS128 Gesture") as info:
        load_split("dvs", "train", data_dir=tmp_path)
    assert str(tmp_path / "DVSGesture" / "ibmGestureTrain") in str(info.value)
    (tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led").mkdir(parents=True)
    with pytest.raises(DataError, match="no .npy"):
        load_split("dvs", "test", data_dir=tmp_path)


def test_dvs_bad_layout(tmp_path: Path, no_network: None) -> None:
    folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_led"
    folder.mkdir(parents=True)
    np.save(folder / "11.npy", make_events(np.random.default_rng(0), 10, 0, 10))
    with pytest.raises(DataError, match="label"):
        load_split("dvs", "train", data_dir=tmp_path, timesteps=DVS_T)
    (folder / "11.npy").unlink()
    np.save(folder / "4.npy", np.zeros((5, 3)))
    with pytest.raises(DataError, match="4.npy"):
        load_split("dvs", "train", data_dir=tmp_path, timesteps=DVS_T)


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_static() -> None:
    a = load_split("synthetic", "train", seed=5)
    b = load_split("synthetic", "train", seed=5)
    test = load_split("synthetic", "test", seed=5)
    other = load_split("synthetic", "train", seed=6)
    assert a.x.shape == (512, 1, 28, 28) and a.x.dtype == np.uint8 and len(test) == 256
    assert a.encoding == "static" and a.num_classes == 10
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x[:256], test.x)
    assert not np.array_equal(a.x, other.x)
    assert set(a.y.tolist()) == set(range(10)) == set(test.y.tolist())
    limited = load_split("synthetic", "train", seed=5, limit=50)
    assert len(limited) == 50
    idx = data._limit_indices(512, 50, 5)
    np.testing.assert_array_equal(limited.x, a.x[idx])  # a limit is a subset of the full split


def test_synthetic_is_learnable() -> None:
    train = load_split("synthetic", "train", limit=200)
    test = load_split("synthetic", "test", limit=100)
    flat = train.x.reshape(len(train), -1).astype(float)
    centroids = np.stack([flat[train.y == c].mean(0) for c in range(10)])
    dist = ((test.x.reshape(len(test), 1, -1).astype(float) - centroids[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == test.y).mean() > 0.9


def test_synthetic_frames() -> None:
    a = load_split("synthetic-frames", "train", timesteps=6, limit=20, seed=2)
    b = load_split("synthetic-frames", "train", timesteps=6, limit=20, seed=2)
    assert a.x.shape == (20, 6, 2, 32, 32) and a.x.dtype == np.uint16
    assert a.encoding == "frames" and a.num_classes == 11
    np.testing.assert_array_equal(a.x, b.x)
    assert a.x.sum() > 0


# ----------------------------------------------------------------------------- splitting and batching


def small_split(n: int = 23) -> Split:
    x = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(2, axis=2)
    return Split(x=x, y=np.arange(n, dtype=np.int64) % 3, num_classes=3, encoding="static")


def test_train_val_split() -> None:
    s = small_split(40)
    tr, val = train_val_split(s, 0.25, seed=1)
    tr2, val2 = train_val_split(s, 0.25, seed=1)
    _, val3 = train_val_split(s, 0.25, seed=2)
    ids_tr, ids_val = set(tr.x[:, 0, 0, 0].tolist()), set(val.x[:, 0, 0, 0].tolist())
    assert len(val) == 10 and len(tr) == 30
    assert ids_tr.isdisjoint(ids_val) and ids_tr | ids_val == set(range(40))
    np.testing.assert_array_equal(val.x, val2.x)
    np.testing.assert_array_equal(tr.y, tr2.y)
    assert not np.array_equal(val.x, val3.x)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(DataError):
            train_val_split(s, bad, seed=0)


def test_iterate_batches() -> None:
    s = small_split(23)
    batches = list(iterate_batches(s, 5, shuffle=True, seed=3, epoch=1))
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    seen = np.concatenate([x[:, 0, 0, 0] for x, _ in batches])
    assert sorted(seen.tolist()) == list(range(23))
    np.testing.assert_array_equal(seen, np.random.default_rng((3, 1)).permutation(23))
    for x, y in batches:
        np.testing.assert_array_equal(y, x[:, 0, 0, 0].astype(np.int64) % 3)  # pairs stay together

    def order(seed: int, epoch: int) -> list[int]:
        batches = iterate_batches(s, 4, shuffle=True, seed=seed, epoch=epoch)
        return np.concatenate([x[:, 0, 0, 0] for x, _ in batches]).tolist()

    assert order(3, 1) == order(3, 1)
    assert order(3, 1) != order(3, 2)
    assert order(3, 1) != order(4, 1)
    plain = np.concatenate([x[:, 0, 0, 0] for x, _ in iterate_batches(s, 4, shuffle=False)])
    np.testing.assert_array_equal(plain, np.arange(23))
    with pytest.raises(DataError):
        next(iterate_batches(s, 0, shuffle=False))


def test_bad_arguments() -> None:
    for kwargs in ({"name": "cifar", "split": "train"}, {"name": "synthetic", "split": "val"}):
        with pytest.raises(DataError):
            load_split(**kwargs)
    with pytest.raises(DataError):
        load_split("synthetic", "train", limit=0)
    with pytest.raises(DataError):
        load_split("synthetic", "train", seed=-1)
    with pytest.raises(DataError):
        Split(x=np.zeros((2, 1, 4, 4), dtype=np.float32), y=np.zeros(2, dtype=np.int64), num_classes=2, encoding="static")
    with pytest.raises(DataError):
        Split(x=np.zeros((2, 1, 4, 4), dtype=np.uint8), y=np.zeros(3, dtype=np.int64), num_classes=2, encoding="static")


def test_data_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, qsnn_deploy.data.loaders as d; d.load_split('synthetic', 'test', limit=5); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
