"""DVS128 Gesture as ``uint16`` event-count frames, read through tonic from a local folder.

Framed splits are cached as ``.npz`` beside the data. ``tonic`` (which pulls in torch) is
imported lazily, only when a DVS split is loaded.
"""

from __future__ import annotations

import functools
import logging
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from qsnn_deploy.atomic import write_atomic
from qsnn_deploy.data.split import Split, _limit_indices
from qsnn_deploy.encodings import FRAMES
from qsnn_deploy.errors import DataError

log = logging.getLogger(__name__)

DVS_CLASSES = 11
#: sensor size after the 128 -> 32 spatial downsampling, tonic order (W, H, P)
DVS_SENSOR: tuple[int, int, int] = (32, 32, 2)
DVS_SPATIAL_FACTOR = 0.25
#: frame length in microseconds (5 ms bins, as in the paper)
DVS_BIN_US = 5000
DVS_FOLDERS: dict[str, str] = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
DVS_ARCHIVES: dict[str, str] = {"train": "ibmGestureTrain.tar.gz", "test": "ibmGestureTest.tar.gz"}
#: bump when the framing changes so stale caches are rebuilt
_DVS_CACHE_VERSION = 1

# Expected layout (tonic's, after extracting the figshare archives):
#   <data_dir>/DVSGesture/ibmGestureTrain/user01_fluorescent/0.npy ... 10.npy
#   <data_dir>/DVSGesture/ibmGestureTest/user24_led/...
# Each .npy is an (n, 4) array of events, columns x, y, p, t with t in milliseconds; the
# file name is the class label. tonic itself only skips downloading if the .tar.gz archive
# is present and the folder has >= 100 .npy files; we check the folder ourselves and use a
# subclass whose download() raises, so no network access can ever happen.


def _dvs_root(data_dir: Path) -> Path:
    """Return tonic's ``save_to`` folder; ``data_dir`` may also be the ``DVSGesture`` folder itself."""
    if not (data_dir / "DVSGesture").is_dir() and data_dir.name == "DVSGesture":
        return data_dir.parent
    return data_dir


def _dvs_missing_message(split: str, folder: Path) -> str:
    """One-line DataError message for a missing DVS128 Gesture split."""
    return (
        f"DVS128 Gesture {split} data not found: {folder} has no .npy samples; download "
        f"{DVS_ARCHIVES[split]} (tonic's preprocessed DVSGesture, figshare) and extract it so that "
        f"{folder}/userNN_<lighting>/<label>.npy exist, or pass --data-dir (the folder holding DVSGesture/)"
    )


def _check_dvs_folder(split: str, root: Path) -> Path:
    """Return the split's sample folder, raising :class:`DataError` if it holds no ``.npy`` files."""
    folder = root / "DVSGesture" / DVS_FOLDERS[split]
    if not folder.is_dir() or next(folder.rglob("*.npy"), None) is None:
        raise DataError(_dvs_missing_message(split, folder))
    return folder


@functools.cache
def _local_dvsgesture_class() -> type:
    """Return a tonic DVSGesture subclass that reads local files only and never downloads."""
    import numpy.lib.recfunctions  # noqa: F401  (tonic uses np.lib.recfunctions without importing it)
    from tonic.datasets import DVSGesture

    def _check_exists(self: Any) -> bool:
        return True  # _check_dvs_folder already verified the samples; no archive needed

    def download(self: Any) -> None:
        raise DataError(_dvs_missing_message("train" if self.train else "test", Path(self.location_on_system)))

    # tonic derives the folder from the class name (<save_to>/<ClassName>), so keep the name.
    return type("DVSGesture", (DVSGesture,), {"_check_exists": _check_exists, "download": download})


def _dvs_transform() -> Any:
    """Return the tonic event -> frame transform: 128x128 -> 32x32, 5 ms bins."""
    import tonic.transforms as tt

    return tt.Compose(
        [
            tt.Downsample(spatial_factor=DVS_SPATIAL_FACTOR),
            tt.ToFrame(sensor_size=DVS_SENSOR, time_window=DVS_BIN_US),
        ]
    )


def _open_dvs(split: str, root: Path, folder: Path) -> tuple[Any, list[int]]:
    """Open the tonic data set and return it with a deterministic sample order (by folder, label)."""
    try:
        ds = _local_dvsgesture_class()(save_to=str(root), train=split == "train", transform=_dvs_transform())
    except ValueError as exc:  # tonic parses userNN_<lighting> folder names and <label>.npy file names
        raise DataError(f"unexpected file layout in {folder}: {exc}; expected userNN_<lighting>/<label>.npy") from exc
    bad = [p for p, t in zip(ds.data, ds.targets) if not 0 <= t < DVS_CLASSES]
    if bad:
        raise DataError(f"{bad[0]} has a label outside 0..{DVS_CLASSES - 1} (the file name is the label)")
    order = sorted(range(len(ds)), key=lambda i: (Path(ds.data[i]).parent.name, ds.targets[i], ds.data[i]))
    return ds, order


def _frame_sample(ds: Any, index: int, timesteps: int) -> np.ndarray:
    """Load one sample through tonic and return its first ``timesteps`` frames, zero-padded."""
    path = ds.data[index]
    try:
        frames, _ = ds[index]
    except (OSError, ValueError, IndexError, TypeError, EOFError) as exc:
        raise DataError(f"cannot read DVS sample {path}: {exc}; expected an (n, 4) array x, y, p, t[ms]") from exc
    frames = np.asarray(frames)[:timesteps]
    if frames.size and frames.min() < 0:
        raise DataError(f"DVS sample {path} overflows tonic's int16 frame counts; the file looks corrupt")
    out = np.zeros((timesteps, DVS_SENSOR[2], DVS_SENSOR[1], DVS_SENSOR[0]), dtype=np.uint16)
    out[: len(frames)] = frames
    return out


def _frame_samples(ds: Any, indices: list[int], timesteps: int) -> np.ndarray:
    """Frame the given samples into one ``uint16`` ``(N, T, 2, 32, 32)`` array."""
    x = np.zeros((len(indices), timesteps, DVS_SENSOR[2], DVS_SENSOR[1], DVS_SENSOR[0]), dtype=np.uint16)
    for row, index in enumerate(indices):
        x[row] = _frame_sample(ds, index, timesteps)
        if (row + 1) % 100 == 0:
            log.info("framed %d/%d DVS samples", row + 1, len(indices))
    return x


def _dvs_cache_path(root: Path, split: str, timesteps: int) -> Path:
    """Return the frame cache file of a split and frame count (beside the data)."""
    return root / "DVSGesture" / f"qsnn_frames_{split}_T{timesteps}.npz"


def _dvs_fingerprint(ds: Any, order: list[int], folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (relative paths, sizes) of the samples, to tell whether a cache is still valid."""
    paths = [Path(ds.data[i]) for i in order]
    names = np.array([p.relative_to(folder).as_posix() for p in paths], dtype=np.str_)
    sizes = np.array([p.stat().st_size for p in paths], dtype=np.int64)
    return names, sizes


def _read_dvs_cache(path: Path, names: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Return cached (x, y) if ``path`` is a valid cache for exactly these files, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            valid = (
                int(npz["version"]) == _DVS_CACHE_VERSION and np.array_equal(npz["files"], names) and np.array_equal(npz["sizes"], sizes)
            )
            if not valid:
                log.info("DVS frame cache %s is stale; rebuilding it", path)
                return None
            return npz["x"], npz["y"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable DVS frame cache %s: %s", path, exc)
        return None


def _write_dvs_cache(path: Path, x: np.ndarray, y: np.ndarray, names: np.ndarray, sizes: np.ndarray) -> None:
    """Atomically write the frame cache; a read-only data folder only costs the cache."""

    def writer(fh: IO[bytes]) -> None:
        np.savez_compressed(fh, x=x, y=y, files=names, sizes=sizes, version=np.int64(_DVS_CACHE_VERSION))

    try:
        write_atomic(path, writer)
    except OSError as exc:
        log.warning("cannot write DVS frame cache %s (%s); the next load will frame the events again", path, exc)


def _load_dvs(split: str, data_dir: Path, timesteps: int, limit: int | None, seed: int) -> Split:
    """Load DVS128 Gesture as uint16 event-count frames, using/refreshing the .npz cache."""
    root = _dvs_root(data_dir)
    folder = _check_dvs_folder(split, root)
    ds, order = _open_dvs(split, root, folder)
    names, sizes = _dvs_fingerprint(ds, order, folder)
    labels = np.array([ds.targets[i] for i in order], dtype=np.int64)
    cache = _dvs_cache_path(root, split, timesteps)
    idx = _limit_indices(len(order), limit, seed)
    cached = _read_dvs_cache(cache, names, sizes)
    if cached is not None:
        data = Split(x=cached[0], y=cached[1].astype(np.int64), num_classes=DVS_CLASSES, encoding=FRAMES)
        return data if idx is None else data.subset(idx)
    if idx is not None:  # frame only the requested subset; the full cache is built by a full load
        chosen = [order[i] for i in idx]
        return Split(x=_frame_samples(ds, chosen, timesteps), y=labels[idx], num_classes=DVS_CLASSES, encoding=FRAMES, indices=idx)
    log.info("framing %d DVS %s samples (T=%d); cached in %s", len(order), split, timesteps, cache)
    x = _frame_samples(ds, order, timesteps)
    _write_dvs_cache(cache, x, labels, names, sizes)
    return Split(x=x, y=labels, num_classes=DVS_CLASSES, encoding=FRAMES)
