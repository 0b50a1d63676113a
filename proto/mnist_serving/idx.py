"""The IDX format of MNIST-style datasets, gzip-compressed or not: the one reader and writer the trainer,
the client and the tests share.

IDX: two zero bytes, one element-type byte (0x08 = unsigned byte, ...), one byte with the number of
dimensions, each dimension as a big-endian uint32, then the data in row-major order, big-endian.

>>> images = read_idx("t10k-images-idx3-ubyte.gz")    # doctest: +SKIP
>>> images.shape, images.dtype
((10000, 28, 28), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

UBYTE_TYPE = 0x08
# The element-type byte -> numpy dtype; values are stored big-endian.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxError(ValueError):
    """An IDX file is unreadable: missing, corrupt gzip, wrong magic number, header and data disagree."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def read_idx(path: str | os.PathLike, count: int | None = None, ndim: int | None = None) -> np.ndarray:
    """The array stored in an IDX file: its first `count` entries along axis 0 if given; `ndim` (3 for
    images, 1 for labels) makes the magic number say which kind of file is expected."""
    try:
        with open(path, "rb") as raw:
            data = raw.read()
    except FileNotFoundError:
        raise IdxError(path, "file not found") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
            detail = "truncated: compressed stream ends early" if isinstance(exc, EOFError) else str(exc)
            raise IdxError(path, f"not a readable gzip file ({detail or type(exc).__name__})") from None
    elif str(path).endswith(".gz"):
        raise IdxError(path, f"not a readable gzip file (it starts with {data[:16]!r})")
    return parse_idx(data, count, ndim, name=str(path))


def parse_idx(data: bytes, count: int | None = None, ndim: int | None = None, name: str = "IDX data") -> np.ndarray:
    """The array in IDX bytes (see read_idx)."""
    if len(data) < 4:
        raise IdxError(name, f"too short for an IDX header ({len(data)} bytes)")
    zero1, zero2, type_code, file_ndim = data[:4]
    if zero1 or zero2 or type_code not in _DTYPES or file_ndim == 0 or (ndim and file_ndim != ndim):
        expected = f"0x0000TT{ndim:02x}" if ndim else "0x0000TTNN"
        raise IdxError(
            name,
            f"wrong magic number 0x{data[:4].hex()}, expected {expected} (two zero bytes, an "
            "element type TT such as 08 for unsigned bytes, then the number of dimensions)",
        )
    dtype = _DTYPES[type_code]
    header = 4 + 4 * file_ndim
    if len(data) < header:
        raise IdxError(name, f"header ends early: {file_ndim} dimensions need {header} bytes")
    shape = struct.unpack(f">{file_ndim}I", data[4:header])
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected_bytes:
        raise IdxError(
            name, f"holds {len(data) - header} data bytes, the header's shape {shape} needs {expected_bytes}"
        )
    if count is not None:
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        shape = (min(count, shape[0]), *shape[1:])
    items = int(np.prod(shape, dtype=np.int64))
    array = np.frombuffer(data, dtype, count=items, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: Path | str, array: np.ndarray) -> Path:
    """Writes a uint8 array as an IDX file (gzip-compressed when the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx supports uint8 arrays only, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"an IDX array needs 1..255 dimensions, got {array.ndim}")
    header = struct.pack(">BBBB", 0, 0, UBYTE_TYPE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    # zlib's default level: gzip's own default (9) is several times slower for a few percent.
    opener = (lambda: gzip.open(path, "wb", compresslevel=6)) if path.suffix == ".gz" else (lambda: open(path, "wb"))
    with opener() as f:
        f.write(header)
        f.write(np.ascontiguousarray(array).tobytes())
    return path
