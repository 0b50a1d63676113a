"""Reading and writing the IDX format of MNIST-style datasets (optionally gzip-compressed).

IDX: two zero bytes, one type byte (0x08 = unsigned byte), one byte with the number of dimensions, then
each dimension as a big-endian uint32, then the data in row-major order.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import DataFileError

UBYTE_TYPE = 0x08


def _open(path: Path, mode: str):
    if path.suffix != ".gz":
        return open(path, mode)
    # zlib's default level: gzip's own default (9) is several times slower for a few percent.
    return gzip.open(path, mode, compresslevel=6) if "w" in mode else gzip.open(path, mode)


def write_idx(path: Path | str, array: np.ndarray) -> Path:
    """Writes a uint8 array as an IDX file (gzip-compressed when the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx supports uint8 arrays only, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"an IDX array needs 1..255 dimensions, got {array.ndim}")
    header = struct.pack(">BBBB", 0, 0, UBYTE_TYPE, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with _open(path, "wb") as f:
        f.write(header)
        f.write(np.ascontiguousarray(array).tobytes())
    return path


def read_idx(path: Path | str, ndim: int | None = None) -> np.ndarray:
    """Reads a uint8 IDX file; every way the file can be broken raises DataFileError naming the file.

    `ndim` (3 for MNIST images, 1 for labels) makes the magic number itself say which kind of file is expected.
    """
    path = Path(path)
    try:
        with _open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
        raise DataFileError(path, f"not a readable gzip file ({_describe(exc)})") from None
    if len(raw) < 4:
        raise DataFileError(path, f"too short for an IDX header ({len(raw)} bytes)")
    zero1, zero2, dtype, file_ndim = struct.unpack(">BBBB", raw[:4])
    if zero1 or zero2 or dtype != UBYTE_TYPE or file_ndim == 0 or (ndim and file_ndim != ndim):
        expected = f"0x{UBYTE_TYPE:06x}{ndim:02x}" if ndim else "0x000008NN (unsigned bytes, NN dimensions)"
        raise DataFileError(path, f"wrong magic number 0x{raw[:4].hex()}, expected {expected}")
    ndim = file_ndim
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataFileError(path, f"header ends early: {ndim} dimensions need {header_size} bytes")
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected = int(np.prod(shape, dtype=np.int64))
    actual = len(raw) - header_size
    if actual != expected:
        raise DataFileError(path, f"holds {actual} data bytes, the header's shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "truncated: compressed stream ends early"
    return str(exc) or type(exc).__name__
