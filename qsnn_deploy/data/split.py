"""The :class:`Split` container every loader returns, and the seeded subset they all share.

It sits apart from :mod:`qsnn_deploy.data.loaders` so the loaders (:mod:`.data_idx`, :mod:`.data_dvs`,
:mod:`.data_synthetic`) can build splits without importing the front door that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qsnn_deploy.errors import DataError

KINDS: tuple[str, ...] = ("static", "frames", "events")
#: (dtype, ndim) of ``x`` per kind
_X_LAYOUT = {"static": (np.uint8, 4), "frames": (np.uint16, 5), "events": (np.uint8, 3)}
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
        kind: ``"static"``, ``"frames"`` or ``"events"``.
        indices: Position of each sample in the whole split it was drawn from (``--limit``
            picks a seeded subset), so a result can name the samples; None means ``0..N-1``.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    kind: str
    indices: np.ndarray | None = None

    def __post_init__(self) -> None:
        """Check shapes and dtypes so a malformed split fails here, not deep in training."""
        if self.kind not in KINDS:
            raise DataError(f"split kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        want_dtype, want_ndim = _X_LAYOUT[self.kind]
        if self.x.dtype != want_dtype or self.x.ndim != want_ndim:
            raise DataError(
                f"{self.kind} split needs x of dtype {np.dtype(want_dtype).name} with {want_ndim} dims, "
                f"got {self.x.dtype} with shape {self.x.shape}"
            )
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
        return Split(x=self.x[index], y=self.y[index], num_classes=self.num_classes, kind=self.kind, indices=self.sample_indices()[index])


def _limit_indices(n: int, limit: int | None, seed: int) -> np.ndarray | None:
    """Return sorted indices of a seeded random subset of ``limit`` of ``n`` samples, or None for all."""
    if limit is None or limit >= n:
        return None
    perm = np.random.default_rng((seed, _LIMIT_SALT)).permutation(n)
    return np.sort(perm[:limit])
