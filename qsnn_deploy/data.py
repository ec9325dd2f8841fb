"""Data sets as NumPy arrays: Fashion-MNIST / MNIST (IDX files), DVS128 Gesture, synthetic.

NumPy arrays are the currency on purpose: the integer simulator consumes these splits and
must not import torch. This module therefore never imports torch at import time; ``tonic``
(which pulls in torch) is imported lazily, only on the DVS code path.

Array conventions (see :class:`Split`):

* static images: ``uint8`` ``(N, C, H, W)`` raw pixels 0..255 (the model scales them);
* event frames: ``uint16`` ``(N, T, C, H, W)`` event counts per time bin and polarity;
* labels: ``int64`` ``(N,)``.

Nothing here downloads anything: a missing data set is a :class:`DataError` telling the
user where the files were looked for and how to get them.
"""

from __future__ import annotations

import functools
import gzip
import logging
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .atomic import write_atomic
from .errors import DataError

log = logging.getLogger(__name__)

#: where each file-backed data set is looked for when no ``data_dir`` is given
DEFAULT_DIRS: dict[str, Path] = {
    # Debian/Ubuntu package ``dataset-fashion-mnist`` installs the gzipped IDX files here
    "fmnist": Path("/usr/share/datasets/fashion-mnist"),
    "mnist": Path("~/data/mnist").expanduser(),
    # tonic's ``save_to`` folder: it holds DVSGesture/ibmGestureTrain and DVSGesture/ibmGestureTest
    "dvs": Path("~/data/dvs").expanduser(),
}

#: every name :func:`load_split` accepts
DATASET_NAMES: tuple[str, ...] = ("fmnist", "mnist", "dvs", "synthetic", "synthetic-frames")
SPLITS: tuple[str, ...] = ("train", "test")
KINDS: tuple[str, ...] = ("static", "frames")

# ----------------------------------------------------------------------------- IDX files

#: IDX file stems per split: (images, labels)
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: torchvision's folder for each IDX data set (``<root>/<folder>/raw/``)
TORCHVISION_FOLDERS: dict[str, str] = {"fmnist": "FashionMNIST", "mnist": "MNIST"}
#: IDX type code (third magic byte) -> big-endian NumPy dtype
_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
IMAGE_SIZE = 28
IDX_CLASSES = 10

# ----------------------------------------------------------------------------- DVS128 Gesture

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

# ----------------------------------------------------------------------------- synthetic

SYNTHETIC_SIZES: dict[str, int] = {"train": 512, "test": 256}
SYNTHETIC_FRAMES_SIZES: dict[str, int] = {"train": 256, "test": 128}
_SPLIT_STREAM: dict[str, int] = {"train": 1, "test": 2}
_PROTOTYPE_STREAM = 0
# salts so that limit, validation split and synthetic data draw independent streams
_LIMIT_SALT = 0x11A1
_VAL_SALT = 0x7A1


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a data set, held as NumPy arrays.

    Attributes:
        x: Static images ``uint8`` ``(N, C, H, W)`` (raw pixels 0..255), or event frames
            ``uint16`` ``(N, T, C, H, W)`` (event counts per time bin).
        y: Labels, ``int64`` ``(N,)`` in ``0..num_classes-1``.
        num_classes: Number of classes of the data set (not only those present in ``y``).
        kind: ``"static"`` or ``"frames"``.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    kind: str

    def __post_init__(self) -> None:
        """Check shapes and dtypes so a malformed split fails here, not deep in training."""
        if self.kind not in KINDS:
            raise DataError(f"split kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        want_dtype, want_ndim = (np.uint8, 4) if self.kind == "static" else (np.uint16, 5)
        if self.x.dtype != want_dtype or self.x.ndim != want_ndim:
            raise DataError(
                f"{self.kind} split needs x of dtype {np.dtype(want_dtype).name} with {want_ndim} dims, "
                f"got {self.x.dtype} with shape {self.x.shape}"
            )
        if self.y.dtype != np.int64 or self.y.ndim != 1 or len(self.y) != len(self.x):
            raise DataError(
                f"split needs y of dtype int64 and shape ({len(self.x)},), got {self.y.dtype} {self.y.shape}"
            )
        if self.num_classes < 1:
            raise DataError(f"num_classes must be >= 1, got {self.num_classes}")

    def __len__(self) -> int:
        """Return the number of samples."""
        return int(self.y.shape[0])

    def subset(self, idx: np.ndarray) -> Split:
        """Return the samples at ``idx`` (an index array or boolean mask) as a new split.

        Args:
            idx: Integer indices or a boolean mask of length ``len(self)``.

        Returns:
            A split holding copies of the selected samples, in the order of ``idx``.
        """
        index = np.asarray(idx)
        if index.dtype != np.bool_ and not np.issubdtype(index.dtype, np.integer):
            if index.size:  # an empty list arrives as float64
                raise DataError(f"subset indices must be integers or a boolean mask, got {index.dtype}")
            index = index.astype(np.int64)
        return Split(x=self.x[index], y=self.y[index], num_classes=self.num_classes, kind=self.kind)


# ============================================================================ public API


def load_split(
    name: str,
    split: str,
    *,
    data_dir: str | Path | None = None,
    timesteps: int = 100,
    limit: int | None = None,
    seed: int = 0,
) -> Split:
    """Load one split of a data set as NumPy arrays.

    Args:
        name: ``"fmnist"``, ``"mnist"``, ``"dvs"``, ``"synthetic"`` or ``"synthetic-frames"``.
        split: ``"train"`` or ``"test"``.
        data_dir: Folder holding the data; ``None`` uses :data:`DEFAULT_DIRS`. For ``dvs``
            this is tonic's ``save_to`` folder (the one containing ``DVSGesture/``); the
            ``DVSGesture`` folder itself is accepted too. Ignored for synthetic data.
        timesteps: Number of frames kept per sample (``dvs``, ``synthetic-frames``).
        limit: Keep a seeded random subset of at most this many samples (in index order).
        seed: Seed of the ``limit`` subset and of synthetic data.

    Returns:
        The split.

    Raises:
        DataError: Unknown name/split, bad arguments, or missing/malformed data files.
    """
    _check_args(name, split, timesteps, limit, seed)
    if name in TORCHVISION_FOLDERS:
        data = _load_idx_split(name, split, _resolve_dir(name, data_dir))
        return _apply_limit(data, limit, seed)
    if name == "dvs":
        return _load_dvs(split, _resolve_dir(name, data_dir), timesteps, limit, seed)
    if name == "synthetic":
        return _synthetic_static(split, seed, limit)
    return _synthetic_frames(split, seed, timesteps, limit)


def train_val_split(train: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Split a training set into (train, validation), deterministically for a seed.

    Args:
        train: The training split.
        val_fraction: Fraction of samples moved to validation, in ``(0, 1)``; at least one
            sample ends up on each side.
        seed: Seed of the split (non-negative).

    Returns:
        ``(train, validation)``: disjoint, together all samples, each in index order.

    Raises:
        DataError: ``val_fraction`` outside ``(0, 1)``, a negative seed, or fewer than 2 samples.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    _check_seed(seed, "seed")
    n = len(train)
    if n < 2:
        raise DataError(f"cannot split {n} sample(s) into train and validation; need at least 2")
    n_val = min(max(int(round(n * val_fraction)), 1), n - 1)
    perm = np.random.default_rng((seed, _VAL_SALT)).permutation(n)
    return train.subset(np.sort(perm[n_val:])), train.subset(np.sort(perm[:n_val]))


def iterate_batches(
    split: Split, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x, y)`` batches covering every sample exactly once.

    Args:
        split: The split to iterate.
        batch_size: Samples per batch; the last batch may be smaller (it is kept).
        shuffle: Visit samples in the order of ``np.random.default_rng((seed, epoch))
            .permutation(len(split))``, so a resumed run reproduces an epoch's order.
        seed: Non-negative run seed (used only with ``shuffle``).
        epoch: Non-negative epoch number (used only with ``shuffle``).

    Yields:
        ``(x, y)`` NumPy arrays (copies) of at most ``batch_size`` samples.

    Raises:
        DataError: ``batch_size < 1`` or a negative seed/epoch.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    n = len(split)
    if shuffle:
        _check_seed(seed, "seed")
        _check_seed(epoch, "epoch")
        order = np.random.default_rng((seed, epoch)).permutation(n)
    else:
        order = np.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield split.x[idx], split.y[idx]


# ============================================================================ helpers


def _check_args(name: str, split: str, timesteps: int, limit: int | None, seed: int) -> None:
    """Validate :func:`load_split` arguments, raising :class:`DataError` on the first bad one."""
    if name not in DATASET_NAMES:
        raise DataError(f"unknown data set {name!r}; choose from {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if timesteps < 1:
        raise DataError(f"timesteps must be >= 1, got {timesteps}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1 (or None for all samples), got {limit}")
    _check_seed(seed, "seed")


def _check_seed(value: int, what: str) -> None:
    """Raise :class:`DataError` unless ``value`` is a non-negative integer (NumPy seeds must be)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise DataError(f"{what} must be a non-negative integer, got {value!r}")


def _resolve_dir(name: str, data_dir: str | Path | None) -> Path:
    """Return ``data_dir`` (user-expanded) or the data set's default folder."""
    return DEFAULT_DIRS[name] if data_dir is None else Path(data_dir).expanduser()


def _limit_indices(n: int, limit: int | None, seed: int) -> np.ndarray | None:
    """Return sorted indices of a seeded random subset of ``limit`` of ``n`` samples, or None for all."""
    if limit is None or limit >= n:
        return None
    perm = np.random.default_rng((seed, _LIMIT_SALT)).permutation(n)
    return np.sort(perm[:limit])


def _apply_limit(data: Split, limit: int | None, seed: int) -> Split:
    """Cut ``data`` to the seeded ``limit`` subset (see :func:`_limit_indices`)."""
    idx = _limit_indices(len(data), limit, seed)
    return data if idx is None else data.subset(idx)


# ============================================================================ IDX (MNIST family)
#
# We parse IDX ourselves instead of using torchvision.datasets.FashionMNIST/MNIST: the
# Debian package (dataset-fashion-mnist) installs a flat folder of .gz files, which
# torchvision's dataset classes do not accept without their <root>/<Name>/raw/ layout and
# their download/extract logic; and the simulator path must stay torch-free. IDX is a tiny
# format (big-endian header + raw array), so a strict NumPy reader is simpler and safer.


def _read_bytes(path: Path) -> bytes:
    """Read a file, transparently gunzipping it if it starts with the gzip magic bytes."""
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}; re-download or reinstall the data set") from exc
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into a NumPy array in native byte order.

    Args:
        path: The IDX file.

    Returns:
        The array with the shape given by the IDX header.

    Raises:
        DataError: Unreadable file, bad magic number, or a length that does not match the header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(
            f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); re-download or reinstall it"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header; re-download or reinstall it")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(dims, dtype=object)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"IDX file {path} is truncated or corrupt: {len(raw)} bytes but its header {dims} "
            f"needs {expected}; re-download or reinstall it"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find_file(folder: Path, stem: str) -> Path | None:
    """Return ``folder/stem`` or ``folder/stem.gz`` if either is a file (plain preferred)."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_idx_files(name: str, split: str, root: Path) -> tuple[Path, Path]:
    """Locate the images and labels IDX files of ``split`` under ``root``.

    Accepts a flat folder (Debian's layout, plain or .gz) and torchvision's
    ``<root>/<FashionMNIST|MNIST>/raw/`` layout.
    """
    stems = IDX_FILES[split]
    tv = TORCHVISION_FOLDERS[name]
    candidates = [root, root / tv / "raw", root / tv]
    for folder in candidates:
        images, labels = (_find_file(folder, stem) for stem in stems)
        if images is not None and labels is not None:
            return images, labels
    if name == "fmnist":
        hint = "install it with: apt-get install dataset-fashion-mnist, or pass --data-dir"
    else:
        hint = "pass --data-dir pointing at a folder with the MNIST IDX files (plain or .gz)"
    where = "does not exist" if not root.exists() else "holds no such files"
    raise DataError(
        f"{name} {split} data not found: looked for {stems[0]}[.gz] and {stems[1]}[.gz] in "
        f"{', '.join(str(c) for c in candidates)} ({root} {where}); {hint}"
    )


def _load_idx_split(name: str, split: str, root: Path) -> Split:
    """Load and validate one MNIST-family split from IDX files."""
    images_path, labels_path = _find_idx_files(name, split, root)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(
            f"{images_path} should hold uint8 images of shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}), "
            f"got {images.dtype} {images.shape}; is it the right file?"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{labels_path} should hold uint8 labels of shape (N,), got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images")
    if labels.size and int(labels.max()) >= IDX_CLASSES:
        raise DataError(f"{labels_path} has label {int(labels.max())}; expected 0..{IDX_CLASSES - 1}")
    return Split(x=images[:, None], y=labels.astype(np.int64), num_classes=IDX_CLASSES, kind="static")


# ============================================================================ DVS128 Gesture
#
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
        raise DataError(
            f"unexpected file layout in {folder}: {exc}; expected userNN_<lighting>/<label>.npy"
        ) from exc
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
                int(npz["version"]) == _DVS_CACHE_VERSION
                and np.array_equal(npz["files"], names)
                and np.array_equal(npz["sizes"], sizes)
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
        data = Split(x=cached[0], y=cached[1].astype(np.int64), num_classes=DVS_CLASSES, kind="frames")
        return data if idx is None else data.subset(idx)
    if idx is not None:  # frame only the requested subset; the full cache is built by a full load
        chosen = [order[i] for i in idx]
        return Split(x=_frame_samples(ds, chosen, timesteps), y=labels[idx], num_classes=DVS_CLASSES, kind="frames")
    log.info("framing %d DVS %s samples (T=%d); cached in %s", len(order), split, timesteps, cache)
    x = _frame_samples(ds, order, timesteps)
    _write_dvs_cache(cache, x, labels, names, sizes)
    return Split(x=x, y=labels, num_classes=DVS_CLASSES, kind="frames")


# ============================================================================ synthetic


def _synthetic_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` balanced labels (every class present when ``n >= num_classes``) in seeded order."""
    return rng.permutation(np.arange(n, dtype=np.int64) % num_classes)


def _blocky_masks(rng: np.random.Generator, shape: tuple[int, ...], block: int, density: float) -> np.ndarray:
    """Return random binary masks of ``shape`` (last two dims coarse) upsampled by ``block``."""
    coarse = (rng.random(shape) < density).astype(np.float64)
    return np.kron(coarse, np.ones((block, block)))


def _synthetic_indices(split: str, seed: int, limit: int | None, sizes: dict[str, int]) -> np.ndarray:
    """Return the sample indices to generate: all of the split, or the seeded ``limit`` subset."""
    n = sizes[split]
    idx = _limit_indices(n, limit, seed)
    return np.arange(n) if idx is None else idx


def _synthetic_static(split: str, seed: int, limit: int | None) -> Split:
    """Generate learnable static data: 10 class prototypes (shared by both splits) + shift + noise.

    Every sample draws from its own ``(seed, split, index)`` stream, so a ``limit`` subset
    equals the same samples of the full split.
    """
    num_classes = IDX_CLASSES
    prototypes = 20.0 + 180.0 * _blocky_masks(
        np.random.default_rng((seed, _PROTOTYPE_STREAM)), (num_classes, 7, 7), 4, 0.4
    )
    stream = _SPLIT_STREAM[split]
    labels = _synthetic_labels(SYNTHETIC_SIZES[split], num_classes, np.random.default_rng((seed, stream)))
    idx = _synthetic_indices(split, seed, limit, SYNTHETIC_SIZES)
    x = np.empty((len(idx), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for row, i in enumerate(idx):
        rng = np.random.default_rng((seed, stream, int(i)))
        shift = rng.integers(-2, 3, size=2)
        image = np.roll(prototypes[labels[i]], shift, axis=(0, 1)) + rng.normal(0.0, 30.0, (IMAGE_SIZE, IMAGE_SIZE))
        x[row, 0] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return Split(x=x, y=labels[idx], num_classes=num_classes, kind="static")


def _synthetic_frames(split: str, seed: int, timesteps: int, limit: int | None) -> Split:
    """Generate learnable event frames: Poisson counts from 11 class rate maps that drift in time.

    Shape ``(N, T, 2, 32, 32)`` uint16, like :func:`_load_dvs`. Each class has a rate map
    per polarity and a drift direction (a crude "gesture"); per-sample streams as in
    :func:`_synthetic_static`.
    """
    num_classes = DVS_CLASSES
    proto_rng = np.random.default_rng((seed, _PROTOTYPE_STREAM, 1))
    rates = 0.02 + 0.5 * _blocky_masks(proto_rng, (num_classes, DVS_SENSOR[2], 8, 8), 4, 0.3)
    drift = proto_rng.integers(-1, 2, size=(num_classes, 2))
    stream = _SPLIT_STREAM[split] + 10
    labels = _synthetic_labels(SYNTHETIC_FRAMES_SIZES[split], num_classes, np.random.default_rng((seed, stream)))
    idx = _synthetic_indices(split, seed, limit, SYNTHETIC_FRAMES_SIZES)
    x = np.empty((len(idx), timesteps, DVS_SENSOR[2], DVS_SENSOR[1], DVS_SENSOR[0]), dtype=np.uint16)
    steps = np.arange(timesteps) // 10
    for row, i in enumerate(idx):
        rng = np.random.default_rng((seed, stream, int(i)))
        label = labels[i]
        start = rng.integers(-2, 3, size=2)
        for t in range(timesteps):
            dy, dx = start + drift[label] * steps[t]
            x[row, t] = rng.poisson(np.roll(rates[label], (int(dy), int(dx)), axis=(1, 2)))
    return Split(x=x, y=labels[idx], num_classes=num_classes, kind="frames")


__all__ = [
    "DATASET_NAMES",
    "DEFAULT_DIRS",
    "Split",
    "iterate_batches",
    "load_split",
    "read_idx",
    "train_val_split",
]


#: 1,000 Fashion-MNIST test images (seeded subset) shipped for the demo on machines without the data set
PACKAGED_SUBSET = Path(__file__).parent / "assets" / "fmnist_test_subset.npz"


def load_fmnist_test_or_subset(data_dir: str | Path | None = None, limit: int | None = None) -> tuple[Split, str]:
    """The Fashion-MNIST test set if installed, else the subset shipped with the package.

    Returns the split and a description of where it came from.
    """
    try:
        return load_split("fmnist", "test", data_dir=data_dir, limit=limit), "Fashion-MNIST test set"
    except DataError:
        with np.load(PACKAGED_SUBSET) as f:
            subset = Split(x=f["x"], y=f["y"], num_classes=10, kind="static")
        if limit is not None:
            subset = subset.subset(np.arange(min(limit, len(subset))))
        return subset, f"packaged Fashion-MNIST subset ({len(subset)} test images; install dataset-fashion-mnist for all 10,000)"
