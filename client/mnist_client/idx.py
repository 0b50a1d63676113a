"""Read IDX files (the MNIST format), gzipped or not; the client's own small reader.

>>> images = read_idx("t10k-images-idx3-ubyte.gz")    # doctest: +SKIP
>>> images.shape, images.dtype
((10000, 28, 28), dtype('uint8'))
"""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np

# The third magic byte names the element type; values are stored big-endian.
_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
           0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxError(ValueError):
    """The file is not a well-formed IDX file; the message says what is wrong."""


def read_idx(path: str | os.PathLike, count: int | None = None) -> np.ndarray:
    """The array stored in an IDX file (first ``count`` entries along axis 0 if given)."""
    with open(path, "rb") as raw:
        data = raw.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise IdxError(f"{path}: corrupt gzip data: {exc}") from None
    return parse_idx(data, count, name=str(path))


def parse_idx(data: bytes, count: int | None = None, name: str = "IDX data") -> np.ndarray:
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxError(f"{name}: not an IDX file (bad magic number)")
    dtype = _DTYPES.get(data[2])
    if dtype is None:
        raise IdxError(f"{name}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise IdxError(f"{name}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise IdxError(f"{name}: header says {list(shape)} ({expected} bytes of data), "
                       f"file holds {len(data) - header}")
    if count is not None:
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        shape = (min(count, shape[0]), *shape[1:])
    items = int(np.prod(shape))
    array = np.frombuffer(data, dtype, count=items, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)
