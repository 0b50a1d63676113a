"""The trainer's view of IDX files (the reader and writer are mnist_serving.idx): uint8 only, and every
broken file raises the trainer's DataFileError naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_serving import idx
from mnist_serving.idx import write_idx

from .errors import DataFileError

__all__ = ["read_idx", "write_idx"]


def read_idx(path: Path | str, ndim: int | None = None) -> np.ndarray:
    """Reads a uint8 IDX file; `ndim` (3 for MNIST images, 1 for labels) is checked against the magic number."""
    try:
        array = idx.read_idx(path, ndim=ndim)
    except idx.IdxError as exc:
        raise DataFileError(exc.path, exc.problem) from None
    if array.dtype != np.uint8:
        raise DataFileError(path, f"holds {array.dtype} values, expected unsigned bytes (IDX type 0x08)")
    return array
