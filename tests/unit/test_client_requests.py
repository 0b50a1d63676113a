"""Turning user inputs into requests, and responses into predictions (no server needed)."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from PIL import Image

from mnist_client import ClientError, Prediction
from mnist_client.requests import build_request, chunk_requests, image_count, model_spec, normalize
from mnist_client.results import ModelInfo, predictions_from
from mnist_serving.v1 import classifier_pb2 as pb


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def test_a_single_image_becomes_a_batch_of_one():
    image = _images(1)[0]
    batch = normalize(image)
    assert batch.shape == (1, 28, 28) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], image)


def test_float_images_are_scaled_to_uint8_exactly():
    images = _images(5)
    np.testing.assert_array_equal(normalize(images / 255.0), images)


def test_a_trailing_channel_axis_is_accepted():
    images = _images(3)
    np.testing.assert_array_equal(normalize(images[..., np.newaxis]), images)


@pytest.mark.parametrize("shape", [(28,), (3, 28, 27), (2, 3, 28, 28), (0, 28)])
def test_a_wrong_shape_is_rejected_naming_the_shape(shape):
    with pytest.raises(ClientError) as info:
        normalize(np.zeros(shape, np.uint8))
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert str(list(shape)) in info.value.details


@pytest.mark.parametrize(
    "array, problem",
    [
        (np.full((28, 28), 1.5), "within [0, 1]"),
        (np.full((28, 28), np.nan), "finite"),
        (np.zeros((28, 28), np.int64), "dtype int64"),
    ],
)
def test_bad_pixel_values_are_rejected(array, problem):
    with pytest.raises(ClientError) as info:
        normalize(array)
    assert problem in info.value.details


def test_a_list_of_arrays_is_packed_into_one_array():
    images = _images(4)
    batch = normalize([images[0], images[1] / 255.0, images[2], images[3]])
    assert isinstance(batch, np.ndarray)
    np.testing.assert_array_equal(batch, images)


def test_files_and_bytes_stay_encoded_and_pil_images_become_pixels(tmp_path):
    images = _images(3)
    path = tmp_path / "digit.png"
    path.write_bytes(_png(images[0]))
    pil = Image.fromarray(255 - np.kron(images[2], np.ones((3, 3), np.uint8)))
    batch = normalize([str(path), _png(images[1]), pil, images[0]])
    assert isinstance(batch, list) and len(batch) == 4
    assert batch[0] == path.read_bytes() and batch[1] == _png(images[1])
    assert batch[2].shape == (28, 28) and batch[2].dtype == np.uint8
    np.testing.assert_array_equal(batch[3], images[0])


def test_a_single_path_or_bytes_is_one_image(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(_png(_images(1)[0]))
    assert len(normalize(path)) == 1
    assert len(normalize(path.read_bytes())) == 1


def test_a_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(ClientError) as info:
        normalize([_images(1)[0], missing])
    assert "image 1" in info.value.details and str(missing) in info.value.details


def test_unsupported_and_empty_inputs_are_rejected():
    with pytest.raises(ClientError, match="image 0: unsupported type int"):
        normalize([3])
    with pytest.raises(ClientError, match="image 0: encoded image is empty"):
        normalize([b""])


def test_chunks_keep_order_and_cover_every_image():
    images = _images(10)
    requests = list(chunk_requests(normalize(images), 4))
    assert [image_count(r) for r in requests] == [4, 4, 2]
    data = b"".join(r.packed.data for r in requests)
    assert data == images.tobytes()
    assert all((r.packed.height, r.packed.width) == (28, 28) for r in requests)


def test_mixed_inputs_use_the_images_field():
    images = _images(2)
    request = build_request(normalize([images[0], _png(images[1])]))
    assert not request.HasField("packed")
    assert request.images[0].pixels == images[0].tobytes()
    assert request.images[1].encoded == _png(images[1])


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError):
        list(chunk_requests(normalize(_images(2)), 0))


def test_model_spec_is_omitted_for_the_defaults():
    assert model_spec("", 0) is None
    assert model_spec("fashion", 2) == pb.ModelSpec(name="fashion", version=2)
    with pytest.raises(ValueError):
        model_spec("", -1)


def _response(labels: list[int], version: int = 3) -> pb.ClassifyResponse:
    predictions = [
        pb.Prediction(label=label, class_name=str(label), probabilities=[1.0 if i == label else 0.0 for i in range(10)])
        for label in labels
    ]
    return pb.ClassifyResponse(model_name="mnist", model_version=version, predictions=predictions)


def test_predictions_carry_label_probabilities_and_version():
    predictions = predictions_from(_response([7, 2]), expected=2)
    assert predictions[0] == Prediction(7, "7", tuple(1.0 if i == 7 else 0.0 for i in range(10)), 3)
    assert [p.label for p in predictions] == [7, 2]
    assert predictions[1].probability == 1.0


def test_a_short_answer_is_an_error():
    with pytest.raises(ClientError) as info:
        predictions_from(_response([1]), expected=2)
    assert info.value.code is grpc.StatusCode.INTERNAL and "1 predictions for 2 images" in info.value.details


def test_a_stream_error_becomes_a_client_error_with_its_code():
    response = pb.ClassifyResponse(
        error=pb.Error(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message="image 0: bad")
    )
    with pytest.raises(ClientError) as info:
        predictions_from(response, expected=1)
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT and info.value.details == "image 0: bad"


def test_model_info_parses_the_metadata_json():
    message = pb.GetModelInfoResponse(
        name="mnist",
        version=2,
        loaded_versions=[1, 2],
        input_shape=[-1, 28, 28],
        input_dtype="uint8",
        class_names=list("0123456789"),
        metadata_json='{"test_accuracy": 0.99}',
        device="cpu",
        max_batch_size=128,
    )
    info = ModelInfo.from_message(message)
    assert info.loaded_versions == (1, 2) and info.metadata == {"test_accuracy": 0.99}
    assert info.input_shape == (-1, 28, 28) and len(info.class_names) == 10
