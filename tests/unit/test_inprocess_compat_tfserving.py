"""TensorFlow Serving's API on our port, called with the official `tensorflow_serving.apis` stubs,
against the in-process server and its fake model (tests/support/inprocess.py).

Answers are compared with our own API (MnistClient) on the same images and with the fake model's
rule; status codes and messages are checked as they arrive on the wire. The real model through this
API (TensorFlow's numbers, the export's own SignatureDef) is tests/integration/test_compat_tfserving.py.
"""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import wrappers_pb2
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from mnist_client import MnistClient
from tests.support.fake_model import fake_classes, signature_def
from tests.support.inprocess import InProcessServer
from tests.support.server_process import metric, scrape_metrics
from tests.support.synthetic import synthetic_arrays

IMAGES, _ = synthetic_arrays(12, seed=21)


@pytest.fixture(scope="module")
def prediction(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def ours(server):
    """What our own API answers for IMAGES: (labels, probabilities)."""
    with MnistClient(server.target) as client:
        predictions = client.classify(IMAGES)
    return np.array([p.label for p in predictions]), np.array([p.probabilities for p in predictions])


def predict_request(tensor, model="mnist", **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model, **spec))
    request.inputs["images"].CopyFrom(tensor)
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value


def test_predict_gives_the_same_classes_as_our_api(prediction, ours, server):
    before = scrape_metrics(server.http_url)
    response = prediction.Predict(predict_request(tf.make_tensor_proto(IMAGES)), timeout=10)
    labels, probabilities = ours
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["classes"]), labels)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), probabilities, atol=1e-6)
    assert set(response.outputs) == {"classes", "probabilities", "logits"}
    assert (response.model_spec.name, response.model_spec.version.value, response.model_spec.signature_name) == (
        "mnist",
        1,
        "serving_default",
    )
    assert labels.tolist() == fake_classes(IMAGES).tolist()  # the model's answers, not a constant one
    after = scrape_metrics(server.http_url)  # same interceptor, same metrics as our API
    method = "tensorflow.serving.PredictionService/Predict"
    assert (
        metric(after, "mnist_serving_requests_total", method=method, model="mnist", code="OK")
        - metric(before, "mnist_serving_requests_total", method=method, model="mnist", code="OK")
        == 1
    )


def _typed(array: np.ndarray, field: str):
    proto = tf.make_tensor_proto(array)
    proto.ClearField("tensor_content")
    getattr(proto, field).extend(array.ravel().tolist())
    return proto


@pytest.mark.parametrize(
    "make_tensor",
    [
        pytest.param(lambda: tf.make_tensor_proto(IMAGES.astype(np.float32) / 255), id="float32-content"),
        pytest.param(lambda: _typed(IMAGES, "int_val"), id="uint8-int_val"),
        pytest.param(lambda: _typed(IMAGES.astype(np.float32) / 255, "float_val"), id="float32-float_val"),
        pytest.param(lambda: tf.make_tensor_proto(IMAGES.reshape(-1, 784)), id="flat-784"),
        pytest.param(lambda: tf.make_tensor_proto(IMAGES[..., None]), id="channels-last"),
    ],
)
def test_every_accepted_input_form_gives_the_same_answer(prediction, ours, make_tensor):
    response = prediction.Predict(predict_request(make_tensor()), timeout=10)
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["classes"]), ours[0])


def test_output_filter_returns_only_the_named_outputs(prediction, ours):
    request = predict_request(tf.make_tensor_proto(IMAGES), version=wrappers_pb2.Int64Value(value=1))
    request.output_filter.append("classes")
    response = prediction.Predict(request, timeout=10)
    assert list(response.outputs) == ["classes"]
    assert response.outputs["classes"].int64_val == ours[0].tolist()  # typed field, as TF Serving answers


def test_get_model_metadata_is_the_versions_serving_signature(prediction):
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_pb2.ModelSpec(name="mnist"), metadata_field=["signature_def"]
    )
    response = prediction.GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert signatures.signature_def["serving_default"] == meta_graph_pb2.SignatureDef.FromString(signature_def())
    images = signatures.signature_def["serving_default"].inputs["images"]
    assert images.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in images.tensor_shape.dim] == [-1, 28, 28]
    assert (response.model_spec.name, response.model_spec.version.value) == ("mnist", 1)


def test_get_model_status_lists_the_served_version(channel):
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    response = stub.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="mnist")), timeout=10
    )
    assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
    ]
    error = rpc_error(
        stub.GetModelStatus,
        get_model_status_pb2.GetModelStatusRequest(
            model_spec=model_pb2.ModelSpec(name="mnist", version=wrappers_pb2.Int64Value(value=7))
        ),
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "version 7 of model 'mnist' is not loaded" in error.details()


def _example(image: np.ndarray, kind: str) -> example_pb2.Example:
    if kind == "bytes_list":
        feature = feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[image.tobytes()]))
    elif kind == "int64_list":
        feature = feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=image.ravel().tolist()))
    else:
        feature = feature_pb2.Feature(float_list=feature_pb2.FloatList(value=(image.ravel() / 255).tolist()))
    return example_pb2.Example(features=feature_pb2.Features(feature={"images": feature}))


@pytest.mark.parametrize("kind", ["bytes_list", "int64_list", "float_list"])
def test_classify_scores_every_class_like_our_api(prediction, ours, kind):
    request = classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(name="mnist"))
    request.input.example_list.examples.extend(_example(image, kind) for image in IMAGES)
    response = prediction.Classify(request, timeout=10)
    labels, probabilities = ours
    scores = np.array([[c.score for c in item.classes] for item in response.result.classifications])
    np.testing.assert_allclose(scores, probabilities, atol=1e-6)
    assert [item.classes[int(np.argmax(row))].label for item, row in zip(response.result.classifications, scores)] == [
        str(label) for label in labels
    ]


ONE = tf.make_tensor_proto(IMAGES[:1])


@pytest.mark.parametrize(
    "request_, code, message",
    [
        (
            predict_request(ONE, model="nope"),
            grpc.StatusCode.NOT_FOUND,
            "model 'nope' is not served; served models: mnist",
        ),
        (
            predict_request(ONE, version=wrappers_pb2.Int64Value(value=9)),
            grpc.StatusCode.NOT_FOUND,
            "version 9 of model 'mnist' is not loaded; loaded versions: 1",
        ),
        (
            predict_request(ONE, version_label="canary"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown version_label 'canary' for model 'mnist'",
        ),
        (
            predict_request(ONE, signature_name="predict_images"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "signature 'predict_images' not found in model 'mnist'; it serves 'serving_default'",
        ),
        (
            predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="mnist"), inputs={"pixels": ONE}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "takes exactly one input, 'images'; the request has ['pixels']",
        ),
        (
            predict_request(tf.make_tensor_proto(IMAGES[:, :27])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'images' has shape [12, 27, 28]; expected [N, 28, 28], [N, 784] or [N, 28, 28, 1]",
        ),
        (
            predict_request(tf.make_tensor_proto(IMAGES.astype(np.int32))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'images' has dtype DT_INT32; expected DT_UINT8 (0-255) or DT_FLOAT (0-1)",
        ),
        (
            predict_request(tf.make_tensor_proto(np.full((1, 28, 28), np.nan, np.float32))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'images' contains NaN or infinity",
        ),
        (
            predict_request(tf.make_tensor_proto(IMAGES[:1].astype(np.float32))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "float pixels must be in [0, 1] (pixel / 255)",
        ),
        (
            predict_request(tf.make_tensor_proto(np.zeros((0, 28, 28), np.uint8))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "the request has no images",
        ),
    ],
)
def test_predict_errors_have_precise_codes_and_messages(prediction, request_, code, message):
    error = rpc_error(prediction.Predict, request_)
    assert error.code() == code
    assert message in error.details()


def test_unknown_output_filter_and_metadata_field_are_invalid(prediction):
    request = predict_request(ONE)
    request.output_filter.append("scores")
    error = rpc_error(prediction.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output_filter names 'scores'" in error.details() and "classes, logits, probabilities" in error.details()
    error = rpc_error(
        prediction.GetModelMetadata,
        get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_pb2.ModelSpec(name="mnist"), metadata_field=["graph"]
        ),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata_field must be ['signature_def']" in error.details()


def test_regress_is_unimplemented(prediction):
    error = rpc_error(
        prediction.Regress, regression_pb2.RegressionRequest(model_spec=model_pb2.ModelSpec(name="mnist"))
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def available_versions(stub) -> list[int]:
    status = stub.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="mnist")), timeout=10
    )
    return sorted(
        s.version for s in status.model_version_status if s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    )


def wait_until_available(stub, versions: list[int], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while available_versions(stub) != versions:
        assert time.monotonic() < deadline, f"versions {versions} not all available within {timeout_s}s"
        time.sleep(0.2)


def test_version_labels_pick_versions():
    flags = ["--keep-versions", "2", "--version-labels", "stable=1,canary=2"]
    with InProcessServer(flags, versions=(1, 2)) as server, grpc.insecure_channel(server.target) as chan:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        wait_until_available(model_service_pb2_grpc.ModelServiceStub(chan), [1, 2])  # ready = newest loaded
        for label, version in (("stable", 1), ("canary", 2)):
            response = stub.Predict(predict_request(ONE, version_label=label), timeout=10)
            assert response.model_spec.version.value == version
        assert stub.Predict(predict_request(ONE), timeout=10).model_spec.version.value == 2  # latest
        metadata = stub.GetModelMetadata(
            get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=model_pb2.ModelSpec(name="mnist", version_label="stable"), metadata_field=["signature_def"]
            ),
            timeout=10,
        )
        assert metadata.model_spec.version.value == 1
