"""The contract package's IDX reader (mnist_serving.idx), as the client uses it: any element type, `count`."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from mnist_serving.idx import IdxError, parse_idx, read_idx


def _idx(array: np.ndarray, type_code: int) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_reads_images_and_labels_gzipped_or_not(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    (tmp_path / "images.gz").write_bytes(gzip.compress(_idx(images, 0x08)))
    (tmp_path / "labels").write_bytes(_idx(labels, 0x08))
    np.testing.assert_array_equal(read_idx(tmp_path / "images.gz"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), labels)


def test_count_takes_the_first_entries():
    images = np.arange(4 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(4, 28, 28)
    np.testing.assert_array_equal(parse_idx(_idx(images, 0x08), count=2), images[:2])
    assert parse_idx(_idx(images, 0x08), count=10).shape == (4, 28, 28)


def test_big_endian_types_are_converted():
    values = np.array([1.5, -2.25, 1e6], np.float32)
    np.testing.assert_array_equal(parse_idx(_idx(values, 0x0D)), values)
    ints = np.array([[70000, -3]], np.int32)
    np.testing.assert_array_equal(parse_idx(_idx(ints, 0x0C)), ints)


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "wrong magic number 0x01000801"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "wrong magic number 0x00000701"),
        (b"\x00\x00\x08\x03\x00\x00", "header ends early: 3 dimensions need 16 bytes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x00", "holds 1 data bytes, the header's shape (3,) needs 3"),
    ],
)
def test_malformed_files_are_explained(data, problem):
    with pytest.raises(
        IdxError, match=problem.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")
    ):
        parse_idx(data)


def test_corrupt_gzip_is_explained(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(b"\x00" * 100)[:20])
    with pytest.raises(IdxError, match="not a readable gzip file"):
        read_idx(path)
