"""Fashion-MNIST presented row by row as Xylo input events (data set ``fmnist-rows``).

Each 28x28 image becomes T = 28 steps, one image row per step (top row first). A row of 28
pixels is reduced to 16 channels, Xylo's input width, by area-weighted binning: channel
``c`` covers the pixel interval ``[c * 28/16, (c + 1) * 28/16)`` (1.75 pixels), and its value
is the mean intensity over that interval, each pixel weighted by the length of its overlap
(so a pixel split between two channels counts in both, by its share). The mean (0..255) is
scaled to Xylo's input range, 0..15 events per channel per step, by ``round(mean * 15 / 255)``
(round half to even, NumPy's rule), and stored as ``uint8`` of shape ``(N, T, 16)``.

The binning is one fixed linear map (:data:`ROW_BINNING`, 28 x 16), so the events are exactly
reproducible from the IDX files on any machine.
"""

from __future__ import annotations

import numpy as np

from qsnn_deploy.data.idx import IMAGE_SIZE
from qsnn_deploy.data.split import Split
from qsnn_deploy.encodings import FRAMES

#: input channels per step: Xylo IMU and Xylo Audio 2 both take 16
ROW_CHANNELS = 16
#: steps per sample: one per image row
ROW_STEPS = IMAGE_SIZE
#: most events one input channel delivers in one step (Xylo caps input events at 15)
MAX_EVENTS = 15


def _binning_matrix(pixels: int, channels: int) -> np.ndarray:
    """(pixels, channels) weights: overlap of pixel ``p`` with channel ``c``'s interval / its width."""
    width = pixels / channels
    edges = np.arange(channels + 1) * width
    lo = np.maximum(np.arange(pixels)[:, None], edges[None, :-1])
    hi = np.minimum(np.arange(pixels)[:, None] + 1, edges[None, 1:])
    return np.clip(hi - lo, 0.0, None) / width


#: the row -> channel map; each column sums to 1 (a channel is a weighted mean of pixels)
ROW_BINNING: np.ndarray = _binning_matrix(IMAGE_SIZE, ROW_CHANNELS)


def images_to_row_events(images: np.ndarray) -> np.ndarray:
    """uint8 images ``(N, 28, 28)`` -> uint8 events ``(N, 28, 16)`` in 0..15 (module docstring)."""
    means = images.astype(np.float64) @ ROW_BINNING
    return np.rint(means * (MAX_EVENTS / 255.0)).astype(np.uint8)


def to_row_events(static: Split) -> Split:
    """An ``fmnist`` split (static images ``(N, 1, 28, 28)``) as the ``fmnist-rows`` events split."""
    return Split(
        x=images_to_row_events(static.x[:, 0]), y=static.y, num_classes=static.num_classes, encoding=FRAMES, indices=static.indices
    )
