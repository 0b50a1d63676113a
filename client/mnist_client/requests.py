"""Any images a user has -> ``ClassifyRequest`` messages of at most ``chunk_size`` images.

Arrays and PIL images become raw pixels (arrays go in one ``packed`` buffer: cheap to build
and to parse); PNG/JPEG bytes and image files are sent ``encoded`` and the server prepares
them the way MNIST was made.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_client.errors import invalid_input
from mnist_serving.images import SIDE, as_uint8, to_pixels
from mnist_serving.v1 import classifier_pb2 as pb

ImageLike = np.ndarray | bytes | bytearray | memoryview | str | os.PathLike | Image.Image
Images = ImageLike | Sequence[ImageLike]
DEFAULT_CHUNK_SIZE = 512

# One image ready to send: uint8 [28, 28] pixels or encoded file bytes.
Item = np.ndarray | bytes


def normalize(images: Images) -> np.ndarray | list[Item]:
    """A uint8 [N, 28, 28] array when every image is pixels, else a list of items."""
    if isinstance(images, np.ndarray):
        return _array_batch(images)
    if isinstance(images, (bytes, bytearray, memoryview, str, os.PathLike, Image.Image)):
        images = [images]
    items = [_item(image, index) for index, image in enumerate(images)]
    if items and all(isinstance(item, np.ndarray) for item in items):
        return np.stack(items)
    return items


def _array_batch(array: np.ndarray) -> np.ndarray:
    given = list(array.shape)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or array.shape[1:] != (SIDE, SIDE):
        raise invalid_input(f"expected images of shape [28, 28] or [N, 28, 28], got {given}")
    try:
        return np.ascontiguousarray(as_uint8(array))
    except ValueError as exc:
        raise invalid_input(str(exc)) from None


def _item(image: ImageLike, index: int) -> Item:
    if isinstance(image, (bytes, bytearray, memoryview)):
        if not image:
            raise invalid_input(f"image {index}: encoded image is empty")
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        try:
            return Path(image).read_bytes()
        except OSError as exc:
            raise invalid_input(f"image {index}: cannot read {image}: {exc.strerror}") from None
    if isinstance(image, (np.ndarray, Image.Image)):
        try:
            return to_pixels(image)
        except ValueError as exc:
            raise invalid_input(f"image {index}: {exc}") from None
    raise invalid_input(
        f"image {index}: unsupported type {type(image).__name__}; give a numpy "
        "array, PNG/JPEG bytes, a file path or a PIL image"
    )


def chunk_requests(
    batch: np.ndarray | list[Item], chunk_size: int, model: pb.ModelSpec | None = None
) -> Iterator[pb.ClassifyRequest]:
    """Requests of at most ``chunk_size`` images each, in order."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    for start in range(0, len(batch), chunk_size):
        yield build_request(batch[start : start + chunk_size], model)


def build_request(
    batch: np.ndarray | list[Item], model: pb.ModelSpec | None = None, request_id: str = ""
) -> pb.ClassifyRequest:
    if isinstance(batch, np.ndarray):
        packed = pb.PackedImages(data=batch.tobytes(), count=len(batch), height=SIDE, width=SIDE)
        return pb.ClassifyRequest(model=model, packed=packed, request_id=request_id)
    images = [
        pb.Image(pixels=item.tobytes()) if isinstance(item, np.ndarray) else pb.Image(encoded=item) for item in batch
    ]
    return pb.ClassifyRequest(model=model, images=images, request_id=request_id)


def model_spec(name: str, version: int) -> pb.ModelSpec | None:
    if version < 0:
        raise ValueError(f"version must be 0 (latest) or positive, got {version}")
    return pb.ModelSpec(name=name, version=version) if (name or version) else None


def image_count(request: pb.ClassifyRequest) -> int:
    return request.packed.count if request.HasField("packed") else len(request.images)
