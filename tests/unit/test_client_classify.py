"""`mnist-client classify FILE...` against a stand-in client: every good file is answered, every bad
one named with its reason, blank images flagged (the real server: tests/integration/test_cli.py)."""

from __future__ import annotations

import io
import json

import grpc
import numpy as np
from PIL import Image

from mnist_client.cli_classify import BLANK_NOTE, classify_files, is_blank
from mnist_client.errors import ClientError
from mnist_client.results import ModelInfo, Prediction


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeClient:
    """Rejects any request holding bytes that are not a PNG, the way the server does."""

    def __init__(self):
        self.requests = 0

    def classify(self, images, version=0):
        self.requests += 1
        images = images if isinstance(images, list) else [images]
        for index, data in enumerate(images):
            if not data.startswith(b"\x89PNG"):
                raise ClientError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"image {index}: not a PNG or JPEG image (unrecognised format)"
                )
        return [Prediction(8, "8", (0.1,) * 8 + (0.2, 0.0), 1) for _ in images]

    def model_info(self, version=0):
        return ModelInfo(
            "mnist",
            1,
            (1,),
            (-1, 28, 28),
            "uint8",
            tuple("0123456789"),
            "cpu",
            64,
            {"image_preparation": "mnist-digit"},
        )


def test_every_good_file_is_answered_and_every_bad_one_named(tmp_path, capsys):
    digit = np.zeros((56, 56), np.uint8)
    digit[10:40, 25:30] = 255
    good, notes, missing = tmp_path / "one.png", tmp_path / "notes.png", tmp_path / "missing.png"
    good.write_bytes(_png(digit))
    notes.write_text("not an image")
    assert classify_files(FakeClient(), [notes, good, missing], version=0, as_json=False) == 1
    out, err = capsys.readouterr()
    assert out == f"{good}\t8\t0.2000\n"
    assert f"error: {notes}: not a PNG or JPEG image (unrecognised format)" in err
    assert f"error: {missing}: cannot read: No such file or directory" in err
    assert "image 0" not in err


def test_a_blank_image_is_flagged(tmp_path, capsys):
    white = tmp_path / "white.png"
    white.write_bytes(_png(np.full((40, 40), 255, np.uint8)))
    client = FakeClient()
    assert classify_files(client, [white], version=0, as_json=True) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)[0]["blank"] is True and json.loads(out)[0]["label"] == 8
    assert f"note: {white}: {BLANK_NOTE}" in err
    assert client.requests == 1


def test_blank_means_every_pixel_the_same():
    assert is_blank(np.zeros((28, 28), np.uint8)) and is_blank(np.full((28, 28), 7, np.uint8))
    one_dot = np.zeros((28, 28), np.uint8)
    one_dot[3, 4] = 1
    assert not is_blank(one_dot)
