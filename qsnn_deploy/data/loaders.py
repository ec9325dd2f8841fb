"""Data sets as NumPy arrays: Fashion-MNIST / MNIST (IDX files), DVS128 Gesture, synthetic.

NumPy arrays are the currency on purpose: the integer simulator consumes these splits and
must not import torch. This module therefore never imports torch at import time; ``tonic``
(which pulls in torch) is imported lazily, only on the DVS code path.

Array conventions (see :class:`Split`):

* static images: ``uint8`` ``(N, C, H, W)`` raw pixels 0..255 (the model scales them);
* event frames: ``uint16`` ``(N, T, C, H, W)`` event counts per time bin and polarity;
* per-step events: ``uint8`` ``(N, T, C)`` events per input channel and step (``fmnist-rows``);
* labels: ``int64`` ``(N,)``.

Nothing here downloads anything: a missing data set is a :class:`DataError` telling the
user where the files were looked for and how to get them.

This module is the front door: the loaders live in :mod:`.data_idx`, :mod:`.data_dvs` and
:mod:`.data_synthetic`, the :class:`Split` container in :mod:`.data_split`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from qsnn_deploy.data.dvs import (  # noqa: F401
    DVS_ARCHIVES,
    DVS_BIN_US,
    DVS_CLASSES,
    DVS_FOLDERS,
    DVS_SENSOR,
    DVS_SPATIAL_FACTOR,
    _load_dvs,
)
from qsnn_deploy.data.idx import (  # noqa: F401
    IDX_CLASSES,
    IDX_FILES,
    IMAGE_SIZE,
    TORCHVISION_FOLDERS,
    _load_idx_split,
    read_idx,
)
from qsnn_deploy.data.rows import to_row_events
from qsnn_deploy.data.sequence_tasks import SEQUENCE_TASKS, load_sequence_task
from qsnn_deploy.data.split import _VAL_SALT, Split, _limit_indices  # noqa: F401
from qsnn_deploy.data.synthetic import (  # noqa: F401
    SYNTHETIC_FRAMES_SIZES,
    SYNTHETIC_SIZES,
    _synthetic_frames,
    _synthetic_static,
)
from qsnn_deploy.encodings import STATIC
from qsnn_deploy.errors import DataError

# The loaders' public constants (DVS_*, IDX_*, IMAGE_SIZE, SYNTHETIC_*) were defined here before
# the loaders got their own modules; they stay reachable as ``qsnn_deploy.data.loaders.<NAME>``.

#: where each file-backed data set is looked for when no ``data_dir`` is given
DEFAULT_DIRS: dict[str, Path] = {
    # Debian/Ubuntu package ``dataset-fashion-mnist`` installs the gzipped IDX files here
    "fmnist": Path("/usr/share/datasets/fashion-mnist"),
    "mnist": Path("~/data/mnist").expanduser(),
    # tonic's ``save_to`` folder: it holds DVSGesture/ibmGestureTrain and DVSGesture/ibmGestureTest
    "dvs": Path("~/data/dvs").expanduser(),
}

#: every name :func:`load_split` accepts
DATASET_NAMES: tuple[str, ...] = ("fmnist", "fmnist-rows", "mnist", "dvs", "synthetic", "synthetic-frames", *SEQUENCE_TASKS)
SPLITS: tuple[str, ...] = ("train", "test")


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
        name: ``"fmnist"``, ``"fmnist-rows"`` (Fashion-MNIST row by row as 16-channel events,
            :mod:`qsnn_deploy.data.rows`), ``"mnist"``, ``"dvs"``, ``"synthetic"``,
            ``"synthetic-frames"``, or a sequence task of :mod:`.sequence_tasks`
            (``first-last-xor``, ``base-addition``, ``seq-fmnist``).
        split: ``"train"`` or ``"test"``.
        data_dir: Folder holding the data; ``None`` uses :data:`DEFAULT_DIRS` (``fmnist-rows``
            reads the ``fmnist`` files). For ``dvs``
            this is tonic's ``save_to`` folder (the one containing ``DVSGesture/``); the
            ``DVSGesture`` folder itself is accepted too. Ignored for synthetic data.
        timesteps: Number of frames kept per sample (``dvs``, ``synthetic-frames``), the sequence
            length of ``first-last-xor`` (6..14) and ``base-addition``; ``seq-fmnist`` needs 28;
            ``fmnist-rows`` always has 28 (one per image row).
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
    if name == "fmnist-rows":
        # the limit is applied to the images first, so the subset is the same images as fmnist's
        return to_row_events(_apply_limit(_load_idx_split("fmnist", split, _resolve_dir("fmnist", data_dir)), limit, seed))
    if name == "dvs":
        return _load_dvs(split, _resolve_dir(name, data_dir), timesteps, limit, seed)
    if name == "synthetic":
        return _synthetic_static(split, seed, limit)
    if name in SEQUENCE_TASKS:  # first-last-xor, base-addition, seq-fmnist (the convex-training tasks)
        return load_sequence_task(name, split, _resolve_dir("fmnist", data_dir), timesteps, limit, seed)
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


def _apply_limit(data: Split, limit: int | None, seed: int) -> Split:
    """Cut ``data`` to the seeded ``limit`` subset (see :func:`_limit_indices`)."""
    idx = _limit_indices(len(data), limit, seed)
    return data if idx is None else data.subset(idx)


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
PACKAGED_SUBSET = Path(__file__).parent.parent / "assets" / "fmnist_test_subset.npz"


def load_fmnist_test_or_subset(data_dir: str | Path | None = None, limit: int | None = None) -> tuple[Split, str]:
    """The Fashion-MNIST test set if installed, else the subset shipped with the package.

    Returns the split and a description of where it came from.
    """
    try:
        return load_split("fmnist", "test", data_dir=data_dir, limit=limit), "Fashion-MNIST test set"
    except DataError:
        with np.load(PACKAGED_SUBSET) as f:
            subset = Split(x=f["x"], y=f["y"], num_classes=10, encoding=STATIC)
        if limit is not None:
            subset = subset.subset(np.arange(min(limit, len(subset))))
        return subset, f"packaged Fashion-MNIST subset ({len(subset)} test images; install dataset-fashion-mnist for all 10,000)"
