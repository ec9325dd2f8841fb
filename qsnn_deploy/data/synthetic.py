"""Synthetic, learnable stand-ins for the real data sets: static images and event frames."""

from __future__ import annotations

import numpy as np

from qsnn_deploy.data.dvs import DVS_CLASSES, DVS_SENSOR
from qsnn_deploy.data.idx import IDX_CLASSES, IMAGE_SIZE
from qsnn_deploy.data.split import Split, _limit_indices
from qsnn_deploy.encodings import FRAMES, STATIC

SYNTHETIC_SIZES: dict[str, int] = {"train": 512, "test": 256}
SYNTHETIC_FRAMES_SIZES: dict[str, int] = {"train": 256, "test": 128}
_SPLIT_STREAM: dict[str, int] = {"train": 1, "test": 2}
_PROTOTYPE_STREAM = 0


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
    prototypes = 20.0 + 180.0 * _blocky_masks(np.random.default_rng((seed, _PROTOTYPE_STREAM)), (num_classes, 7, 7), 4, 0.4)
    stream = _SPLIT_STREAM[split]
    labels = _synthetic_labels(SYNTHETIC_SIZES[split], num_classes, np.random.default_rng((seed, stream)))
    idx = _synthetic_indices(split, seed, limit, SYNTHETIC_SIZES)
    x = np.empty((len(idx), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for row, i in enumerate(idx):
        rng = np.random.default_rng((seed, stream, int(i)))
        shift = rng.integers(-2, 3, size=2)
        image = np.roll(prototypes[labels[i]], shift, axis=(0, 1)) + rng.normal(0.0, 30.0, (IMAGE_SIZE, IMAGE_SIZE))
        x[row, 0] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return Split(x=x, y=labels[idx], num_classes=num_classes, encoding=STATIC, indices=np.asarray(idx, np.int64))


def _synthetic_frames(split: str, seed: int, timesteps: int, limit: int | None) -> Split:
    """Generate learnable event frames: Poisson counts from 11 class rate maps that drift in time.

    Shape ``(N, T, 2, 32, 32)`` uint16, like :func:`.data_dvs._load_dvs`. Each class has a rate map
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
    return Split(x=x, y=labels[idx], num_classes=num_classes, encoding=FRAMES, indices=np.asarray(idx, np.int64))
