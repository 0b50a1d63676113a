"""The two image preparations (mnist_serving.images): what each does to a photo-like input, and that
the server picks the one the export's metadata names."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from mnist_serving.images import PREPARATIONS, decode_image, fashion_product_style, mnist_style


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def product_photo(height: int = 300, width: int = 200, margin: int = 60) -> np.ndarray:
    """A dark 'garment' (a filled trapezoid with a lighter stripe) on a white background."""
    photo = np.full((height + 2 * margin, width + 2 * margin), 255, np.uint8)
    for row in range(height):
        inset = row * width // (4 * height)
        photo[margin + row, margin + inset : margin + width - inset] = 40
    photo[margin + height // 2 : margin + height // 2 + 20, margin : margin + width] = 120
    return photo


def test_a_product_on_white_is_trimmed_fit_to_28_centred_and_negated():
    prepared = fashion_product_style(Image.fromarray(product_photo()))
    assert prepared.shape == (28, 28) and prepared.dtype == np.uint8
    rows = np.flatnonzero(prepared.max(axis=1) > 30)
    cols = np.flatnonzero(prepared.max(axis=0) > 30)
    assert rows[0] == 0 and rows[-1] == 27  # the longest side (height) fills the 28 pixels
    width = cols[-1] - cols[0] + 1
    assert 17 <= width <= 20  # 200/300 of 28, centred
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1
    assert prepared[0, 0] == 0 and prepared[7, 14] > 200  # background dark, garment (40 on white) light


def test_a_fashion_mnist_like_input_on_black_is_not_negated():
    garment = np.zeros((28, 28), np.uint8)
    garment[2:26, 6:22] = 200
    prepared = fashion_product_style(Image.fromarray(garment))
    assert prepared[14, 14] >= 190 and prepared[0, 0] == 0


def test_a_blank_image_prepares_to_all_zeros():
    assert not fashion_product_style(Image.fromarray(np.full((50, 50), 255, np.uint8))).any()


def test_the_two_preparations_differ_where_they_should():
    """MNIST fits the ink into 20x20 and centres by mass; Fashion-MNIST fills the 28 pixels."""
    photo = product_photo()
    digit = mnist_style(Image.fromarray(photo))
    product = fashion_product_style(Image.fromarray(photo))
    assert np.flatnonzero(digit.max(axis=1) > 30).size <= 21
    assert np.flatnonzero(product.max(axis=1) > 30).size == 28
    np.testing.assert_array_equal(decode_image(png(photo), preparation="fashion-mnist-product"), product)
    np.testing.assert_array_equal(decode_image(png(photo)), digit)  # the default is MNIST's


def test_every_preparation_name_is_what_the_trainer_writes():
    assert set(PREPARATIONS) == {"mnist-digit", "fashion-mnist-product"}


@pytest.mark.parametrize(
    "value,loads", [(None, True), ("mnist-digit", True), ("fashion-mnist-product", True), ("polaroid", False)]
)
def test_the_server_takes_the_preparation_from_the_metadata(tmp_path, value, loads):
    from mnist_server.errors import ModelLoadError
    from mnist_server.model import METADATA_FILE, LoadedModel

    metadata = {"class_names": [str(i) for i in range(10)]}
    if value is not None:
        metadata["image_preparation"] = value
    (tmp_path / METADATA_FILE).parent.mkdir(parents=True)
    (tmp_path / METADATA_FILE).write_text(json.dumps(metadata))
    if loads:
        read, text = LoadedModel._read_metadata(tmp_path)
        model = LoadedModel("m", 1, tmp_path, None, None, (), read, text)
        assert model.image_preparation == (value or "mnist-digit")
    else:
        with pytest.raises(ModelLoadError, match="image_preparation 'polaroid' is unknown to this server"):
            LoadedModel._read_metadata(tmp_path)
