"""IDX files the tests write: the MNIST-style layout (big-endian header, uint8 data), optionally gzipped."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    """Encode ``arr`` as an IDX file (big-endian header + big-endian data)."""
    dtype = {0x08: np.dtype("u1"), 0x0C: np.dtype(">i4")}[type_code]
    header = bytes([0, 0, type_code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(dtype).tobytes()


def write_idx_folder(folder: Path, *, gz: bool, sizes: dict[str, int] | None = None, seed: int = 0) -> dict:
    """Write the four MNIST-style IDX files into ``folder``; return the arrays written per split."""
    sizes = sizes or {"train": 6, "test": 4}
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in sizes.items():
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for stem, arr in zip(IDX_STEMS[split], (images, labels)):
            raw = idx_bytes(arr)
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / stem).write_bytes(raw)
        written[split] = (images, labels)
    return written
