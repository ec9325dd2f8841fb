"""MNIST-family data sets (Fashion-MNIST, MNIST) read from IDX files with NumPy alone."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from qsnn_deploy.data.split import Split
from qsnn_deploy.encodings import STATIC
from qsnn_deploy.errors import DataError

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
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); re-download or reinstall it")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header; re-download or reinstall it")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(dims, dtype=object)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"IDX file {path} is truncated or corrupt: {len(raw)} bytes but its header {dims} needs {expected}; re-download or reinstall it"
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
    return Split(x=images[:, None], y=labels.astype(np.int64), num_classes=IDX_CLASSES, encoding=STATIC)
