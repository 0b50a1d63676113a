"""The client library against the real server on loopback."""

from __future__ import annotations

import asyncio
import io

import grpc
import numpy as np
import pytest
from PIL import Image

from mnist_client import AsyncMnistClient, ClientError, MnistClient
from mnist_serving.images import decode_image
from tests.support.synthetic import synthetic_arrays

PROBABILITY_TOLERANCE = 1e-5  # the same pixels may be batched with different neighbours


def _encode(picture: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format=fmt)
    return buffer.getvalue()


def _pictures(count: int) -> list[np.ndarray]:
    """Photo-like pictures: dark ink on light paper, 3x larger, off centre — preprocessing matters."""
    images, _ = synthetic_arrays(count, seed=11)
    pictures = []
    for image in images:
        canvas = np.zeros((100, 90), np.uint8)
        canvas[5:89, 2:86] = np.kron(image, np.ones((3, 3), np.uint8))
        pictures.append(255 - canvas)
    return pictures


def _assert_same(predictions, reference):
    assert [p.label for p in predictions] == [p.label for p in reference]
    np.testing.assert_allclose(
        [p.probabilities for p in predictions], [p.probabilities for p in reference], atol=PROBABILITY_TOLERANCE
    )


@pytest.fixture(scope="module")
def client(server):
    with MnistClient(server.target, timeout=30) as client:
        yield client


def test_every_input_kind_gets_the_answer_of_its_raw_pixels(client, tmp_path):
    pictures = _pictures(6)
    pngs = [_encode(p, "PNG") for p in pictures]
    # The raw array is what MNIST-style preprocessing makes of each picture.
    raw = np.stack([decode_image(png) for png in pngs])
    reference = client.classify(raw)
    assert len(reference) == 6 and all(len(p.probabilities) == 10 for p in reference)
    assert all(abs(sum(p.probabilities) - 1) < 1e-4 for p in reference)
    paths = []
    for index, png in enumerate(pngs):
        paths.append(tmp_path / f"digit{index}.png")
        paths[-1].write_bytes(png)
    kinds = {
        "float array": raw / 255.0,
        "list of [28, 28] arrays": list(raw),
        "file paths": [str(p) for p in paths],
        "path objects": paths,
        "PNG bytes": pngs,
        "PIL images": [Image.open(p) for p in paths],
        "mixed": [paths[0], pngs[1], Image.open(paths[2]), raw[3], raw[4] / 255.0, str(paths[5])],
    }
    for kind, images in kinds.items():
        _assert_same(client.classify(images), reference), kind
    _assert_same(client.classify(raw[2]), reference[2:3])
    _assert_same(client.classify(pngs[4]), reference[4:5])
    _assert_same(client.classify(paths[1]), reference[1:2])
    jpegs = [_encode(p, "JPEG") for p in pictures[:3]]
    _assert_same(client.classify(jpegs), client.classify(np.stack([decode_image(j) for j in jpegs])))


def test_predictions_name_the_class_and_the_model_version(client):
    info = client.model_info()
    prediction = client.classify(np.zeros((28, 28), np.uint8))[0]
    assert prediction.class_name == info.class_names[prediction.label]
    assert prediction.model_version == info.version >= 1
    assert info.input_shape == (-1, 28, 28) and info.metadata.get("test_accuracy") is not None


def _ten_thousand_images() -> np.ndarray:
    images, _ = synthetic_arrays(2000, seed=5)
    shifted = [np.roll(images, shift, axis=2) for shift in (-2, -1, 0, 1, 2)]
    return np.concatenate(shifted)


def test_chunks_are_sent_concurrently_and_reassembled_in_order(server):
    images = _ten_thousand_images()
    assert len(images) == 10_000
    with MnistClient(server.target, timeout=60, chunk_size=1000, max_chunks_in_flight=1) as one_by_one:
        reference = one_by_one.classify(images)
    assert len({p.label for p in reference}) >= 5, "the images must be told apart for this test"
    with MnistClient(server.target, timeout=60, chunk_size=97, max_chunks_in_flight=16) as client:
        _assert_same(client.classify(images), reference)

    async def classify_async():
        async with AsyncMnistClient(server.target, timeout=60, chunk_size=113) as aclient:
            return await aclient.classify(images)

    _assert_same(asyncio.run(classify_async()), reference)


def test_stream_answers_each_input_in_order(client):
    images, _ = synthetic_arrays(40, seed=3)
    reference = client.classify(images)
    batches = [images[i : i + 7] for i in range(0, 40, 7)]
    replies = list(client.classify_stream(iter(batches)))
    assert [len(r) for r in replies] == [len(b) for b in batches]
    _assert_same([p for reply in replies for p in reply], reference)


def test_async_stream_and_info(server):
    images, _ = synthetic_arrays(10, seed=4)

    async def run():
        async with AsyncMnistClient(server.target, timeout=30) as aclient:
            replies = [r async for r in aclient.classify_stream([images[:5], images[5:]])]
            return replies, await aclient.model_info(), await aclient.health()

    replies, info, health = asyncio.run(run())
    assert [len(r) for r in replies] == [5, 5] and info.name and health == "SERVING"


def _error_of(call) -> ClientError:
    with pytest.raises(ClientError) as info:
        call()
    error = info.value
    # raised from None: no chained grpc traceback shown to the user
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return error


def test_a_bad_request_is_invalid_argument_naming_the_image(client):
    error = _error_of(lambda: client.classify([np.zeros((28, 28), np.uint8), b"not an image"]))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "image 1" in error.details


def test_a_bad_stream_message_is_reported_with_its_code(client):
    replies = client.classify_stream([np.zeros((1, 28, 28), np.uint8), b"garbage"])
    assert len(next(replies)) == 1
    error = _error_of(lambda: next(replies))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT and "image 0" in error.details


def test_an_unknown_model_or_version_is_not_found(client):
    image = np.zeros((28, 28), np.uint8)
    error = _error_of(lambda: client.classify(image, model="no-such-model"))
    assert error.code is grpc.StatusCode.NOT_FOUND and "no-such-model" in error.details
    error = _error_of(lambda: client.classify(image, version=999))
    assert error.code is grpc.StatusCode.NOT_FOUND and "999" in error.details
    error = _error_of(lambda: client.model_info(model="no-such-model"))
    assert error.code is grpc.StatusCode.NOT_FOUND


def test_a_missed_deadline_is_deadline_exceeded(client):
    images = np.zeros((4096, 28, 28), np.uint8)
    error = _error_of(lambda: client.classify(images, timeout=0.001))
    assert error.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_health_reports_serving_and_unknown_services(client):
    assert client.health() == "SERVING"
    assert client.health("mnist_serving.v1.Classifier") == "SERVING"
    assert _error_of(lambda: client.health("no.such.Service")).code is grpc.StatusCode.NOT_FOUND


def test_an_unreachable_server_fails_fast_on_health(tmp_path):
    from tests.support.server_process import free_port

    with MnistClient(f"127.0.0.1:{free_port()}", timeout=5) as client:
        assert _error_of(client.health).code is grpc.StatusCode.UNAVAILABLE
