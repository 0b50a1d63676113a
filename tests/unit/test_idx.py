"""IDX reading/writing and dataset loading: round trips, and every broken-file case names the file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from mnist_trainer.datasets import (
    FASHION_MNIST,
    MNIST,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    load_splits,
)
from mnist_trainer.errors import DataFileError
from mnist_trainer.idx import read_idx, write_idx
from tests.support.synthetic import write_synthetic_mnist


@pytest.mark.parametrize("name", ["images.idx3-ubyte.gz", "images.idx3-ubyte"])
@pytest.mark.parametrize("shape", [(0,), (7,), (5, 28, 28), (2, 3, 4, 5)])
def test_round_trip_keeps_shape_and_values(tmp_path, name, shape):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    back = read_idx(write_idx(tmp_path / name, array))
    assert back.shape == shape and back.dtype == np.uint8
    np.testing.assert_array_equal(back, array)


def test_writes_the_mnist_header_bytes(tmp_path):
    path = write_idx(tmp_path / "x.idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 3])  # MNIST's image magic number 2051
    assert raw[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    assert len(raw) == 16 + 2 * 28 * 28


def test_write_refuses_non_uint8(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x.gz", np.zeros((2, 2), np.float32))


def _corrupt(path, data: bytes):
    path.write_bytes(data)
    return path


def test_truncated_gzip_names_the_file(tmp_path):
    good = write_idx(tmp_path / "good.gz", np.ones((50, 28, 28), np.uint8)).read_bytes()
    bad = _corrupt(tmp_path / "train-images-idx3-ubyte.gz", good[: len(good) // 2])
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte.gz.*truncated") as info:
        read_idx(bad)
    assert info.value.path == str(bad)


def test_garbage_that_is_not_gzip(tmp_path):
    bad = _corrupt(tmp_path / "t10k-labels-idx1-ubyte.gz", b"<html>404 not found</html>")
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte.gz: not a readable gzip file"):
        read_idx(bad)


def test_wrong_magic_number(tmp_path):
    bad = tmp_path / "labels.gz"
    with gzip.open(bad, "wb") as f:
        f.write(bytes([0, 0, 0x0D, 1]) + (3).to_bytes(4, "big") + bytes(12))  # 0x0D = float, not ubyte
    with pytest.raises(DataFileError, match="labels.gz: holds float32 values, expected unsigned bytes"):
        read_idx(bad)


def test_data_shorter_than_the_header_says(tmp_path):
    bad = tmp_path / "images.gz"
    with gzip.open(bad, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (10, 28, 28)) + bytes(100))
    with pytest.raises(DataFileError, match=r"images.gz: holds 100 data bytes, the header's shape \(10, 28, 28\)"):
        read_idx(bad)


def test_header_ends_early(tmp_path):
    bad = _corrupt(tmp_path / "x", bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataFileError, match="header ends early"):
        read_idx(bad)


def test_missing_file(tmp_path):
    with pytest.raises(DataFileError, match="nope.gz: file not found"):
        read_idx(tmp_path / "nope.gz")


def _write_set(directory, n_train, n_test, n_train_labels=None, image_shape=(28, 28), max_label=9):
    rng = np.random.default_rng(1)
    write_idx(directory / TRAIN_IMAGES, rng.integers(0, 256, (n_train, *image_shape), dtype=np.uint8))
    write_idx(
        directory / TRAIN_LABELS,
        rng.integers(0, max_label + 1, n_train if n_train_labels is None else n_train_labels, dtype=np.uint8),
    )
    write_idx(directory / TEST_IMAGES, rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))
    write_idx(directory / TEST_LABELS, rng.integers(0, 10, n_test, dtype=np.uint8))


def test_image_and_label_counts_must_match(tmp_path):
    _write_set(tmp_path, 24, 5, n_train_labels=23)
    with pytest.raises(
        DataFileError, match="train-labels-idx1-ubyte.gz: has 23 labels but train-images-idx3-ubyte.gz has 24 images"
    ):
        load_splits(tmp_path, MNIST)


def test_images_must_be_28_by_28(tmp_path):
    _write_set(tmp_path, 24, 5, image_shape=(32, 32))
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte.gz: holds images of 32x32 pixels, expected 28x28"):
        load_splits(tmp_path, MNIST)


def test_labels_must_be_class_indices(tmp_path):
    _write_set(tmp_path, 24, 5, max_label=12)
    with pytest.raises(DataFileError, match="train-labels-idx1-ubyte.gz: has label 1[0-2], expected 0..9"):
        load_splits(tmp_path, FASHION_MNIST)


def test_full_size_split_is_55000_5000_10000(tmp_path):
    # Zeros compress to almost nothing, so the full MNIST sizes are cheap to write.
    for name, shape in [
        (TRAIN_IMAGES, (60000, 28, 28)),
        (TRAIN_LABELS, (60000,)),
        (TEST_IMAGES, (10000, 28, 28)),
        (TEST_LABELS, (10000,)),
    ]:
        write_idx(tmp_path / name, np.zeros(shape, np.uint8))
    splits = load_splits(tmp_path, MNIST)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (55000, 5000, 10000)


def test_validation_is_the_last_twelfth_of_the_training_file(tmp_path):
    write_synthetic_mnist(tmp_path, n_train=1200, n_test=50)
    splits = load_splits(tmp_path, MNIST)
    everything = read_idx(tmp_path / TRAIN_IMAGES)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (1100, 100, 50)
    np.testing.assert_array_equal(splits.validation.images, everything[1100:])


def test_synthetic_classes_differ_but_images_within_a_class_vary(tmp_path):
    write_synthetic_mnist(tmp_path, n_train=600, n_test=10)
    images = read_idx(tmp_path / TRAIN_IMAGES).astype(np.float32)
    labels = read_idx(tmp_path / TRAIN_LABELS)
    assert set(np.unique(labels)) == set(range(10))
    means = np.stack([images[labels == c].mean(axis=0) for c in range(10)])
    between = np.mean([np.abs(means[a] - means[b]).mean() for a in range(10) for b in range(a + 1, 10)])
    within = np.mean([np.abs(images[labels == c] - means[c]).mean() for c in range(10)])
    assert within > 5  # not one picture repeated
    first_two = images[labels == 1][:2]
    assert not np.array_equal(first_two[0], first_two[1])
    assert between > 3


def test_expected_dimensions_are_part_of_the_magic_number(tmp_path):
    labels_as_images = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataFileError, match="wrong magic number 0x00000803, expected 0x0000TT01"):
        read_idx(labels_as_images, ndim=1)
