"""Sequence tasks of the convex-training paper (Udupi, Yang, Zhai), generated or read locally.

All three are ``frames`` splits ``(N, T, C, 1, 1)`` uint16: one C-vector per time step, which the
frozen graph reads as ``Input(shape=(C, 1, 1), encoding=FRAMES)`` followed by a ``Flatten``.

- ``first-last-xor``: T random bits, one-hot per step (channel 0 = bit 0, channel 1 = bit 1);
  the label is the XOR of the first and the last bit, the T - 2 bits between are distractors.
  One-hot, because a 0 bit on one channel would bring no input at all.
- ``base-addition``: T random digits of base b (b = :data:`ADDITION_BASE`), one-hot per step;
  the label is their sum modulo b (a running addition whose carry is forgotten).
- ``seq-fmnist``: Fashion-MNIST, the 28 image rows as 28 time steps of 28 pixels (0..255).

Nothing is downloaded: the synthetic tasks are drawn from a seeded generator, the images are
the local IDX files (:mod:`qsnn_deploy.data.idx`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qsnn_deploy.data.idx import IDX_CLASSES, _load_idx_split
from qsnn_deploy.data.split import Split, _limit_indices
from qsnn_deploy.encodings import FRAMES
from qsnn_deploy.errors import DataError

#: the names :func:`qsnn_deploy.data.loaders.load_split` dispatches to this module
SEQUENCE_TASKS: tuple[str, ...] = ("first-last-xor", "base-addition", "seq-fmnist")
#: samples per split of the generated tasks
SEQUENCE_SIZES: dict[str, int] = {"train": 4000, "test": 2000}
#: the digit base of ``base-addition``
ADDITION_BASE = 3
#: first-last-xor is defined for these sequence lengths (the paper's range)
XOR_STEPS = (6, 14)
_SPLIT_STREAM = {"train": 21, "test": 22}


def _one_hot_frames(symbols: np.ndarray, channels: int) -> np.ndarray:
    """(N, T) symbols 0..channels-1 -> (N, T, channels, 1, 1) uint16 one-hot frames."""
    frames = np.zeros((*symbols.shape, channels, 1, 1), np.uint16)
    np.put_along_axis(frames[..., 0, 0], symbols[..., None], 1, axis=2)
    return frames


def _symbols(split: str, seed: int, timesteps: int, alphabet: int, limit: int | None) -> np.ndarray:
    rng = np.random.default_rng((seed, _SPLIT_STREAM[split], alphabet))
    symbols = rng.integers(0, alphabet, size=(SEQUENCE_SIZES[split], timesteps))
    idx = _limit_indices(len(symbols), limit, seed)
    return symbols if idx is None else symbols[idx]


def first_last_xor(split: str, seed: int, timesteps: int, limit: int | None) -> Split:
    """FIRST-LAST-XOR with ``timesteps`` bits per sequence (see the module docstring)."""
    if not XOR_STEPS[0] <= timesteps <= XOR_STEPS[1]:
        raise DataError(f"first-last-xor needs {XOR_STEPS[0]}..{XOR_STEPS[1]} time steps, got {timesteps}")
    bits = _symbols(split, seed, timesteps, 2, limit)
    return Split(x=_one_hot_frames(bits, 2), y=(bits[:, 0] ^ bits[:, -1]).astype(np.int64), num_classes=2, encoding=FRAMES)


def base_addition(split: str, seed: int, timesteps: int, limit: int | None) -> Split:
    """Sum modulo :data:`ADDITION_BASE` of ``timesteps`` one-hot digits."""
    digits = _symbols(split, seed, timesteps, ADDITION_BASE, limit)
    labels = (digits.sum(axis=1) % ADDITION_BASE).astype(np.int64)
    return Split(x=_one_hot_frames(digits, ADDITION_BASE), y=labels, num_classes=ADDITION_BASE, encoding=FRAMES)


def seq_fmnist(split: str, data_dir: Path, timesteps: int, limit: int | None, seed: int) -> Split:
    """Fashion-MNIST images as 28 steps of one 28-pixel row each (``timesteps`` must be 28)."""
    if timesteps != 28:
        raise DataError(f"seq-fmnist presents one image row per step: it needs 28 time steps, got {timesteps}")
    images = _load_idx_split("fmnist", split, data_dir)
    idx = _limit_indices(len(images), limit, seed)
    if idx is not None:
        images = images.subset(idx)
    rows = images.x[:, 0].astype(np.uint16)[..., None, None]  # (N, 28 rows = T, 28 pixels = C, 1, 1)
    return Split(x=rows, y=images.y, num_classes=IDX_CLASSES, encoding=FRAMES)


def load_sequence_task(name: str, split: str, data_dir: Path, timesteps: int, limit: int | None, seed: int) -> Split:
    """One split of the sequence task ``name`` (one of :data:`SEQUENCE_TASKS`)."""
    if name == "first-last-xor":
        return first_last_xor(split, seed, timesteps, limit)
    if name == "base-addition":
        return base_addition(split, seed, timesteps, limit)
    return seq_fmnist(split, data_dir, timesteps, limit, seed)


__all__ = ["ADDITION_BASE", "SEQUENCE_SIZES", "SEQUENCE_TASKS", "XOR_STEPS", "load_sequence_task"]
