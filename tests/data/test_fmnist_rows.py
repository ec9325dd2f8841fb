"""The ``fmnist-rows`` data set: Fashion-MNIST row by row as 16-channel Xylo input events."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from idx_files import FMNIST_DIR, write_idx_folder

from qsnn_deploy.data.loaders import DATASET_NAMES, Split, iterate_batches, load_split
from qsnn_deploy.data.rows import MAX_EVENTS, ROW_BINNING, ROW_CHANNELS, ROW_STEPS, images_to_row_events
from qsnn_deploy.errors import DataError


def _binned_by_loops(image: np.ndarray) -> np.ndarray:
    """The documented binning written out pixel by pixel: channel c averages [1.75 c, 1.75 (c + 1))."""
    width = 28 / 16
    out = np.zeros((28, 16))
    for row in range(28):
        for c in range(16):
            lo, hi = c * width, (c + 1) * width
            total = sum(float(image[row, p]) * max(0.0, min(hi, p + 1) - max(lo, p)) for p in range(28))
            out[row, c] = total / width
    return np.rint(out * 15 / 255)


def test_registered_and_documented_layout() -> None:
    assert "fmnist-rows" in DATASET_NAMES
    assert (ROW_STEPS, ROW_CHANNELS, MAX_EVENTS) == (28, 16, 15)
    np.testing.assert_allclose(ROW_BINNING.sum(axis=0), 1.0)  # each channel is a weighted mean
    np.testing.assert_allclose(ROW_BINNING.sum(axis=1), 16 / 28)  # each pixel counts once in total


def test_loader_reads_idx_files_row_by_row(tmp_path: Path) -> None:
    written = write_idx_folder(tmp_path, gz=True, sizes={"train": 5, "test": 3}, seed=3)
    for split in ("train", "test"):
        images, labels = written[split]
        got = load_split("fmnist-rows", split, data_dir=tmp_path)
        assert isinstance(got, Split) and got.encoding == "frames" and got.x.dtype == np.uint8 and got.x.ndim == 3
        assert got.x.dtype == np.uint8 and got.x.shape == (len(images), 28, 16)
        np.testing.assert_array_equal(got.y, labels.astype(np.int64))
        for image, events in zip(images, got.x):
            np.testing.assert_array_equal(events, _binned_by_loops(image))


def test_intensity_extremes_and_structure() -> None:
    images = np.zeros((3, 28, 28), np.uint8)
    images[1] = 255
    images[2, 5, :2] = 255  # the first 2 pixels of row 5: channel 0 (1.75 px) full, channel 1 gets 0.25/1.75
    events = images_to_row_events(images)
    assert events[0].max() == 0 and (events[1] == MAX_EVENTS).all()
    assert events[2, 5, 0] == 15 and events[2, 5, 1] == round(15 * 0.25 / 1.75) == 2
    assert events[2].sum() == 17  # nothing leaks into other rows or channels


def test_limit_takes_the_same_images_as_fmnist(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=False, sizes={"train": 9, "test": 4}, seed=5)
    rows = load_split("fmnist-rows", "train", data_dir=tmp_path, limit=4, seed=2)
    images = load_split("fmnist", "train", data_dir=tmp_path, limit=4, seed=2)
    np.testing.assert_array_equal(rows.y, images.y)
    np.testing.assert_array_equal(rows.x, images_to_row_events(images.x[:, 0]))
    np.testing.assert_array_equal(rows.sample_indices(), images.sample_indices())  # results name the same images
    (xb, yb), *_ = iterate_batches(rows, 3, shuffle=False)
    assert xb.shape == (3, 28, 16) and len(yb) == 3


def test_missing_files_name_the_fmnist_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fmnist train data not found"):
        load_split("fmnist-rows", "train", data_dir=tmp_path / "nothing")


def test_split_rejects_wrong_event_layout() -> None:
    with pytest.raises(DataError, match="frames split needs x of uint16 with 5 dims or uint8 with 3 dims, got uint16"):
        Split(x=np.zeros((2, 28, 16), np.uint16), y=np.zeros(2, np.int64), num_classes=10, encoding="frames")


@pytest.mark.skipif(not FMNIST_DIR.is_dir() and not os.environ.get("CI"), reason="Fashion-MNIST IDX files not installed")
def test_real_test_set() -> None:
    got = load_split("fmnist-rows", "test")
    assert got.x.shape == (10_000, 28, 16) and got.x.dtype == np.uint8
    assert got.x.max() == MAX_EVENTS and 2.0 < got.x.mean() < 7.0
    assert np.bincount(got.y).tolist() == [1000] * 10
