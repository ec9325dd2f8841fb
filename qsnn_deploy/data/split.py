"""The :class:`Split` container every loader returns, and the seeded subset they all share.

It sits apart from :mod:`qsnn_deploy.data.loaders` so the loaders (:mod:`.data_idx`, :mod:`.data_dvs`,
:mod:`.data_synthetic`) can build splits without importing the front door that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qsnn_deploy.encodings import ENCODINGS, FRAMES, STATIC
from qsnn_deploy.errors import DataError

#: the layouts ``x`` may take per encoding, as (dtype, ndim): static images (N, C, H, W); frames as
#: event frames (N, T, C, H, W) of counts or per-step event vectors (N, T, C)
_X_LAYOUTS = {STATIC: ((np.uint8, 4),), FRAMES: ((np.uint16, 5), (np.uint8, 3))}
# salts so that limit, validation split and synthetic data draw independent streams
_LIMIT_SALT = 0x11A1
_VAL_SALT = 0x7A1


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a data set, held as NumPy arrays.

    Attributes:
        x: Static images ``uint8`` ``(N, C, H, W)`` (raw pixels 0..255), or event frames
            ``uint16`` ``(N, T, C, H, W)`` (event counts per time bin), or per-step input
            events ``uint8`` ``(N, T, C)`` (events per channel per step, e.g. ``fmnist-rows``).
        y: Labels, ``int64`` ``(N,)`` in ``0..num_classes-1``.
        num_classes: Number of classes of the data set (not only those present in ``y``).
        encoding: ``"static"`` or ``"frames"`` (:mod:`qsnn_deploy.encodings`), how ``x`` presents over time.
        indices: Position of each sample in the whole split it was drawn from (``--limit``
            picks a seeded subset), so a result can name the samples; None means ``0..N-1``.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    encoding: str
    indices: np.ndarray | None = None

    def __post_init__(self) -> None:
        """Check shapes and dtypes so a malformed split fails here, not deep in training."""
        if self.encoding not in ENCODINGS:
            raise DataError(f"split encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        layouts = _X_LAYOUTS[self.encoding]
        if (self.x.dtype, self.x.ndim) not in layouts:
            wanted = " or ".join(f"{np.dtype(d).name} with {n} dims" for d, n in layouts)
            raise DataError(f"{self.encoding} split needs x of {wanted}, got {self.x.dtype} with shape {self.x.shape}")
        if self.y.dtype != np.int64 or self.y.ndim != 1 or len(self.y) != len(self.x):
            raise DataError(f"split needs y of dtype int64 and shape ({len(self.x)},), got {self.y.dtype} {self.y.shape}")
        if self.num_classes < 1:
            raise DataError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.indices is not None and np.shape(self.indices) != (len(self.y),):
            raise DataError(f"split indices must have shape ({len(self.y)},), got {np.shape(self.indices)}")

    def sample_indices(self) -> np.ndarray:
        """Position of every sample in the whole split (int64, length N)."""
        return np.arange(len(self), dtype=np.int64) if self.indices is None else np.asarray(self.indices, dtype=np.int64)

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
        return Split(
            x=self.x[index], y=self.y[index], num_classes=self.num_classes, encoding=self.encoding, indices=self.sample_indices()[index]
        )


def _limit_indices(n: int, limit: int | None, seed: int) -> np.ndarray | None:
    """Return sorted indices of a seeded random subset of ``limit`` of ``n`` samples, or None for all."""
    if limit is None or limit >= n:
        return None
    perm = np.random.default_rng((seed, _LIMIT_SALT)).permutation(n)
    return np.sort(perm[:limit])
