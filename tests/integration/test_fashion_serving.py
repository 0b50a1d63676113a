"""Fashion-MNIST served next to MNIST from one real server, with a model the real trainer trained on the
genuine files: the served accuracy equals the trainer's record; product photos (test images, dark on a
light background, larger, as JPEG or PNG) are prepared the Fashion-MNIST way and keep their accuracy
within a few points, where MNIST's digit preparation would lose far more; both models answer on every
protocol by name."""

from __future__ import annotations

import io
import json
import urllib.request

import numpy as np
import pytest
from PIL import Image

from mnist_client import MnistClient
from mnist_serving.idx import read_idx
from mnist_serving.images import decode_image
from mnist_trainer.datasets import FASHION_MNIST
from tests.support.server_process import ServerProcess

PHOTOS = 1000
CLASSES = set(FASHION_MNIST.class_names)


@pytest.fixture(scope="module")
def test_set(fashion_mnist_dir):
    return (
        read_idx(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz"),
        read_idx(fashion_mnist_dir / "t10k-labels-idx1-ubyte.gz"),
    )


@pytest.fixture(scope="module")
def both(exported_model, fashion_exported_model):
    flags = ["--model-dir", str(exported_model), "--model", f"fashion-mnist={fashion_exported_model}"]
    with ServerProcess(flags) as server:
        yield server


def product_photo(pixels: np.ndarray, fmt: str) -> bytes:
    """A test image as a shop would photograph it: dark product on a white background, 4x larger,
    off-centre on a bigger canvas."""
    product = Image.fromarray(255 - pixels).resize((112, 112), Image.BICUBIC)
    canvas = Image.new("L", (160, 140), 255)
    canvas.paste(product, (30, 14))
    buffer = io.BytesIO()
    canvas.save(buffer, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def accuracy(predictions, labels) -> float:
    return float(np.mean([p.label for p in predictions] == np.asarray(labels)))


def test_the_served_accuracy_is_the_trainers_record(both, test_set, fashion_exported_model):
    images, labels = test_set
    metadata = json.loads((fashion_exported_model / "1" / "assets.extra" / "metadata.json").read_text())
    with MnistClient(both.target, timeout=120) as client:
        served = accuracy(client.classify(images, model="fashion-mnist"), labels)
        info = client.model_info(model="fashion-mnist")
    assert abs(served - metadata["test_accuracy"]) <= 0.002, (served, metadata["test_accuracy"])
    assert info.class_names[0] == "T-shirt/top" and info.class_names[9] == "Ankle boot"
    assert metadata["image_preparation"] == "fashion-mnist-product"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_product_photos_keep_their_accuracy_with_the_fashion_preparation(both, test_set, fmt):
    images, labels = test_set[0][:PHOTOS], test_set[1][:PHOTOS]
    photos = [product_photo(image, fmt) for image in images]
    with MnistClient(both.target, timeout=120) as client:
        raw = accuracy(client.classify(images, model="fashion-mnist"), labels)
        prepared = accuracy(client.classify(photos, model="fashion-mnist"), labels)
        # what the same photos would give with MNIST's digit preparation: why each model needs its own
        as_digits = accuracy(
            client.classify(np.stack([decode_image(p) for p in photos]), model="fashion-mnist"), labels
        )
    assert prepared >= raw - 0.03, (prepared, raw)
    assert as_digits < prepared - 0.10, (as_digits, prepared)


def test_both_models_answer_by_name_on_every_protocol(both, test_set):
    images = test_set[0][:4]
    with MnistClient(both.target, timeout=60) as client:
        fashion = client.classify(images, model="fashion-mnist")
        digits = client.classify(images)  # the default model is mnist
    assert {p.class_name for p in fashion} <= CLASSES
    assert all(p.class_name.isdigit() for p in digits)
    expected = [p.label for p in fashion]
    body = json.dumps({"instances": images.tolist()}).encode()
    for url, read in (
        (
            f"{both.http_url}/v1/models/fashion-mnist:predict",
            lambda answer: [row["classes"] for row in answer["predictions"]],
        ),
        (
            f"{both.http_url}/v2/models/fashion-mnist/infer",
            lambda answer: next(o["data"] for o in answer["outputs"] if o["name"] == "classes"),
        ),
    ):
        if "/v2/" in url:
            body = json.dumps(
                {
                    "inputs": [
                        {"name": "images", "datatype": "UINT8", "shape": [4, 28, 28], "data": images.ravel().tolist()}
                    ]
                }
            ).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert read(json.loads(response.read())) == expected, url
    upload = urllib.request.Request(
        f"{both.http_url}/api/v1/classify?model=fashion-mnist",
        data=product_photo(images[0], "PNG"),
        headers={"Content-Type": "image/png"},
    )
    with urllib.request.urlopen(upload, timeout=30) as response:
        answer = json.loads(response.read())
    assert answer["model_name"] == "fashion-mnist"
    assert answer["predictions"][0]["class_name"] in CLASSES
