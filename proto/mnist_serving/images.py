"""Turn any image a user has into what the model takes: uint8 [28, 28], 0 = background.

Encoded files (PNG/JPEG) are prepared the way the model's training data was made; the export's
metadata.json names which (`image_preparation`):
- `mnist-digit` (MNIST, and the default): grayscale, invert a light background, crop to the digit,
  scale to fit 20x20, centre by centre of mass in 28x28;
- `fashion-mnist-product` (Fashion-MNIST's documented conversion of product photos): grayscale, trim
  the border that has the corners' colour, fit the longest side to 28, centre in 28x28, negate a light
  background to a dark one.
The server uses `decode_image` for the `encoded` field; the client uses `to_pixels` for arrays and
PIL images (digits).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

SIDE = 28
DIGIT_BOX = 20
DEFAULT_MAX_ENCODED_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_DECODED_PIXELS = 16 * 1024 * 1024


class ImageDecodeError(ValueError):
    """An encoded image could not be turned into 28x28 pixels; the message says why."""


def mnist_style(image: Image.Image) -> np.ndarray:
    """A PIL image of one digit -> uint8 [28, 28] laid out the way MNIST was made."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() > 127:  # dark digit on light paper: MNIST is light on dark
        gray = 255.0 - gray
        border = 255.0 - border
    gray = np.clip(gray - np.median(border), 0, 255)  # background to 0
    ink = np.argwhere(gray > 0.25 * gray.max()) if gray.max() > 0 else np.empty((0, 2))
    if len(ink) == 0:
        return np.zeros((SIDE, SIDE), np.uint8)
    (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0) + 1
    digit = gray[top:bottom, left:right]
    height, width = digit.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    digit = np.asarray(Image.fromarray(digit.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS), np.float32)
    return _centre_by_mass(digit)


TRIM_TOLERANCE = 0.05 * 255  # Fashion-MNIST trims edges within 5% of the corners' colour


def fashion_product_style(image: Image.Image) -> np.ndarray:
    """A PIL image of one product (a photo on a plain background) -> uint8 [28, 28] laid out the
    way Fashion-MNIST was made from Zalando's product images."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    corners = np.array([gray[0, 0], gray[0, -1], gray[-1, 0], gray[-1, -1]])
    background = float(np.median(corners))
    if background > 127:  # a product on white, as photographed: Fashion-MNIST is light on dark
        gray, background = 255.0 - gray, 255.0 - background
    foreground = np.argwhere(np.abs(gray - background) > TRIM_TOLERANCE)
    if len(foreground) == 0:
        return np.zeros((SIDE, SIDE), np.uint8)
    (top, left), (bottom, right) = foreground.min(axis=0), foreground.max(axis=0) + 1
    product = np.clip(gray[top:bottom, left:right] - background, 0, 255)
    height, width = product.shape
    scale = SIDE / max(height, width)
    size = (max(1, min(SIDE, round(width * scale))), max(1, min(SIDE, round(height * scale))))
    product = np.asarray(Image.fromarray(product.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS), np.float32)
    canvas = np.zeros((SIDE, SIDE), np.float32)
    top, left = (SIDE - size[1]) // 2, (SIDE - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = product
    return np.clip(canvas, 0, 255).astype(np.uint8)


PREPARATIONS = {"mnist-digit": mnist_style, "fashion-mnist-product": fashion_product_style}
DEFAULT_PREPARATION = "mnist-digit"


def _centre_by_mass(digit: np.ndarray) -> np.ndarray:
    height, width = digit.shape
    total = digit.sum()
    rows, cols = np.indices(digit.shape)
    com_y = (rows * digit).sum() / total if total else height / 2
    com_x = (cols * digit).sum() / total if total else width / 2
    top = int(np.clip(round(SIDE / 2 - com_y), 0, SIDE - height))
    left = int(np.clip(round(SIDE / 2 - com_x), 0, SIDE - width))
    canvas = np.zeros((SIDE, SIDE), np.float32)
    canvas[top : top + height, left : left + width] = digit
    return np.clip(canvas, 0, 255).astype(np.uint8)


def decoded_pixels(data: bytes, *, max_bytes: int = DEFAULT_MAX_ENCODED_BYTES) -> int:
    """width*height an encoded image would decode to, read from its header only (cheap: lets a
    server budget a whole request's decoding before doing any). Raises ImageDecodeError."""
    width, height = _open(data, max_bytes).size
    return width * height


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_ENCODED_BYTES,
    max_pixels: int = DEFAULT_MAX_DECODED_PIXELS,
    preparation: str = DEFAULT_PREPARATION,
) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 [28, 28], prepared as `preparation` (a PREPARATIONS key) says.
    Raises ImageDecodeError naming the problem."""
    prepare = PREPARATIONS[preparation]
    image = _open(data, max_bytes)
    width, height = image.size
    if width * height > max_pixels:  # checked before decoding: decompression bombs
        raise ImageDecodeError(f"image is {width}x{height} = {width * height} pixels, limit is {max_pixels}")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"corrupt or truncated {image.format} image: {exc}") from None
    return prepare(image)


def _open(data: bytes, max_bytes: int) -> Image.Image:
    """The image with its header parsed and checked, pixels not decoded yet."""
    if not data:
        raise ImageDecodeError("encoded image is empty")
    if len(data) > max_bytes:
        raise ImageDecodeError(f"encoded image is {len(data)} bytes, limit is {max_bytes}")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError("not a PNG or JPEG image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:  # a header claiming absurd dimensions
        raise ImageDecodeError(f"image dimensions are too large to decode: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # e.g. a JPEG cut off inside its header
        raise ImageDecodeError(f"corrupt or truncated image header: {exc}") from None
    if image.format not in ("PNG", "JPEG"):
        raise ImageDecodeError(f"unsupported image format {image.format}; send PNG or JPEG")
    return image


def to_pixels(image: np.ndarray | Image.Image) -> np.ndarray:
    """An array ([28,28] uint8, or float in [0, 1]) or a PIL image -> uint8 [28, 28]."""
    if isinstance(image, Image.Image):
        return mnist_style(image)
    array = np.asarray(image)
    if array.shape != (SIDE, SIDE):
        raise ValueError(f"expected an image of shape (28, 28), got {array.shape}")
    return as_uint8(array)


def as_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 as is; floats in [0, 1] scaled to 0..255; anything else is an error."""
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise ValueError("float images must be finite and within [0, 1]")
        return np.round(array * 255).astype(np.uint8)
    raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {array.dtype}")
