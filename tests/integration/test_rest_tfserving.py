"""TensorFlow Serving's REST API on the HTTP port (web/tfserving.py), against a real server.

Request bodies follow TF Serving's "RESTful API" spec; answers are checked against the spec's
shapes and against what the gRPC PredictionService (official tensorflow_serving.apis stubs)
answers for the same images on the same server.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.support.synthetic import synthetic_arrays

IMAGES, LABELS = synthetic_arrays(6, seed=33)
CLASS_NAMES = [str(digit) for digit in range(10)]
STATUS_V1 = {
    "model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
}


def call(url: str, body=None, *, content_type: str = "application/json", timeout: float = 30.0) -> tuple[int, dict]:
    """(status, JSON answer) of a GET (no body) or POST; HTTP errors are returned, not raised."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type} if data is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def b64(image: np.ndarray) -> dict:
    return {"b64": base64.b64encode(image.astype(np.uint8).tobytes()).decode()}


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def grpc_answer(stub) -> dict[str, np.ndarray]:
    """What gRPC Predict answers for IMAGES: every output as numpy."""
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="mnist"))
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(IMAGES))
    response = stub.Predict(request, timeout=30)
    return {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}


def assert_same_as_grpc(outputs: dict, grpc_answer: dict, count: int = len(IMAGES)) -> None:
    assert set(outputs) == {"classes", "probabilities", "logits"}
    np.testing.assert_array_equal(outputs["classes"], grpc_answer["classes"][:count])
    np.testing.assert_allclose(outputs["probabilities"], grpc_answer["probabilities"][:count], atol=1e-6)
    np.testing.assert_allclose(outputs["logits"], grpc_answer["logits"][:count], atol=1e-5)


def rows_to_columns(predictions: list[dict]) -> dict:
    return {name: np.array([row[name] for row in predictions]) for name in predictions[0]}


# --- status and metadata ------------------------------------------------------------------------


def test_status_as_the_spec_example_shows(server):
    assert call(f"{server.http_url}/v1/models/mnist") == (200, STATUS_V1)
    assert call(f"{server.http_url}/v1/models/mnist/versions/1") == (200, STATUS_V1)


def test_metadata_is_the_json_of_the_grpc_signature_def_map(server, stub):
    status, answer = call(f"{server.http_url}/v1/models/mnist/metadata")
    assert status == 200
    assert answer["model_spec"] == {"name": "mnist", "version": "1", "signature_name": ""}
    grpc_metadata = stub.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_pb2.ModelSpec(name="mnist"), metadata_field=["signature_def"]
        ),
        timeout=10,
    )
    signatures = get_model_metadata_pb2.SignatureDefMap()
    grpc_metadata.metadata["signature_def"].Unpack(signatures)
    assert answer["metadata"]["signature_def"] == json_format.MessageToDict(
        signatures, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    serving = answer["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert serving["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert [d["size"] for d in serving["inputs"]["images"]["tensor_shape"]["dim"]] == ["-1", "28", "28"]
    assert set(serving["outputs"]) == {"classes", "probabilities", "logits"}
    assert call(f"{server.http_url}/v1/models/mnist/versions/1/metadata") == (200, answer)


# --- predict ------------------------------------------------------------------------------------


def test_row_format_uint8_answers_as_grpc_predict(server, grpc_answer):
    status, answer = call(f"{server.http_url}/v1/models/mnist:predict", {"instances": IMAGES.tolist()})
    assert status == 200 and list(answer) == ["predictions"]
    assert len(answer["predictions"]) == len(IMAGES)  # several outputs: one object per instance
    assert all(set(row) == {"classes", "probabilities", "logits"} for row in answer["predictions"])
    assert_same_as_grpc(rows_to_columns(answer["predictions"]), grpc_answer)
    assert np.mean(grpc_answer["classes"] == LABELS) > 0.6  # a trained model, not a constant


def test_columnar_format_float_pixels_answers_as_grpc_predict(server, grpc_answer):
    body = {"signature_name": "serving_default", "inputs": {"images": (IMAGES / 255.0).tolist()}}
    status, answer = call(f"{server.http_url}/v1/models/mnist/versions/1:predict", body)
    assert status == 200 and list(answer) == ["outputs"]
    assert_same_as_grpc({k: np.array(v) for k, v in answer["outputs"].items()}, grpc_answer)


@pytest.mark.parametrize("shape", [(-1, 784), (-1, 28, 28, 1)])
def test_flat_and_channels_last_images_are_taken(server, grpc_answer, shape):
    status, answer = call(
        f"{server.http_url}/v1/models/mnist:predict", {"inputs": IMAGES.reshape(shape).tolist()}
    )  # the spec's unnamed single input
    assert status == 200
    assert_same_as_grpc({k: np.array(v) for k, v in answer["outputs"].items()}, grpc_answer)


def test_row_format_named_inputs_as_in_the_spec(server, grpc_answer):
    instances = [{"images": image.tolist()} for image in IMAGES[:2]]
    status, answer = call(f"{server.http_url}/v1/models/mnist:predict", {"instances": instances})
    assert status == 200
    assert_same_as_grpc(rows_to_columns(answer["predictions"]), grpc_answer, count=2)


def test_b64_images_in_both_formats(server, grpc_answer):
    images = [b64(image) for image in IMAGES]
    status, rows = call(f"{server.http_url}/v1/models/mnist:predict", {"instances": images})
    assert status == 200
    assert_same_as_grpc(rows_to_columns(rows["predictions"]), grpc_answer)
    status, columns = call(f"{server.http_url}/v1/models/mnist:predict", {"inputs": {"images": images}})
    assert status == 200
    assert_same_as_grpc({k: np.array(v) for k, v in columns["outputs"].items()}, grpc_answer)


def test_one_output_gives_plain_values_as_the_spec_says(server, grpc_answer):
    url = f"{server.http_url}/v1/models/mnist:predict"
    status, rows = call(url, {"instances": IMAGES.tolist(), "output_filter": ["classes"]})
    assert (status, rows) == (200, {"predictions": grpc_answer["classes"].tolist()})
    status, columns = call(url, {"inputs": IMAGES.tolist(), "output_filter": ["probabilities"]})
    assert status == 200
    np.testing.assert_allclose(columns["outputs"], grpc_answer["probabilities"], atol=1e-6)


def test_spec_example_answers_the_spec_shape(server):
    """The spec's own first example shape: a list of tensors, each [1, 2] there, [28, 28] here."""
    body = json.loads('{"instances": [' + ", ".join([json.dumps(IMAGES[0].tolist())] * 3) + "]}")
    status, answer = call(f"{server.http_url}/v1/models/mnist:predict", body)
    assert status == 200 and len(answer["predictions"]) == 3
    assert answer["predictions"][0] == answer["predictions"][2]


# --- classify and regress -----------------------------------------------------------------------


def test_classify_examples_as_grpc_classify(server, stub, grpc_answer):
    examples = [
        {"images": IMAGES[0].ravel().tolist()},  # int64_list
        {"images": (IMAGES[1].ravel() / 255.0).tolist()},  # float_list
        {"images": b64(IMAGES[2]), "caption": "ignored"},
    ]  # bytes_list
    status, answer = call(f"{server.http_url}/v1/models/mnist:classify", {"examples": examples})
    assert status == 200 and list(answer) == ["results"]
    assert len(answer["results"]) == 3
    for row, expected in zip(answer["results"], grpc_answer["probabilities"][:3]):
        assert [label for label, _ in row] == CLASS_NAMES
        np.testing.assert_allclose([score for _, score in row], expected, atol=1e-6)
    request = classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(name="mnist"))
    example = request.input.example_list.examples.add()
    example.features.feature["images"].int64_list.value.extend(IMAGES[0].ravel().tolist())
    grpc_scores = [c.score for c in stub.Classify(request, timeout=10).result.classifications[0].classes]
    np.testing.assert_allclose([score for _, score in answer["results"][0]], grpc_scores, atol=1e-6)


def test_classify_context_supplies_the_image_examples_do_not_have(server, grpc_answer):
    body = {
        "signature_name": "serving_default",
        "context": {"images": b64(IMAGES[3])},
        "examples": [{}, {"images": IMAGES[4].ravel().tolist()}],
    }  # an example's own feature wins
    status, answer = call(f"{server.http_url}/v1/models/mnist/versions/1:classify", body)
    assert status == 200
    for row, expected in zip(answer["results"], grpc_answer["probabilities"][3:5]):
        np.testing.assert_allclose([score for _, score in row], expected, atol=1e-6)


def test_regress_is_not_implemented(server):
    status, answer = call(f"{server.http_url}/v1/models/mnist:regress", {"examples": [{"x": 1.0}]})
    assert status == 501 and "classifier" in answer["error"]


# --- version labels -----------------------------------------------------------------------------


def wait_for_versions(http_url: str, versions: list[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        _, answer = call(f"{http_url}/v1/models/mnist")
        available = sorted(s["version"] for s in answer.get("model_version_status", []) if s["state"] == "AVAILABLE")
        if available == versions:
            return
        assert time.monotonic() < deadline, f"versions {versions} not available in {timeout_s}s: {answer}"
        time.sleep(0.2)


@pytest.mark.slow
def test_version_labels_pick_versions(model_base_path, start_server):
    shutil.copytree(model_base_path / "1", model_base_path / "2")
    flags = [
        "--model-dir",
        str(model_base_path),
        "--keep-versions",
        "2",
        "--version-labels",
        "stable=1,canary=2,future=9",
    ]
    with start_server(flags) as server:
        url = f"{server.http_url}/v1/models/mnist"
        wait_for_versions(server.http_url, ["1", "2"])
        assert call(f"{url}/labels/stable") == (200, STATUS_V1)
        status, answer = call(f"{url}/labels/canary")
        assert status == 200 and [s["version"] for s in answer["model_version_status"]] == ["2"]
        for label, version in (("stable", "1"), ("canary", "2")):
            status, metadata = call(f"{url}/labels/{label}/metadata")
            assert status == 200 and metadata["model_spec"]["version"] == version
            status, predicted = call(
                f"{url}/labels/{label}:predict", {"instances": IMAGES[:2].tolist(), "output_filter": ["classes"]}
            )
            assert status == 200 and len(predicted["predictions"]) == 2
            status, classified = call(
                f"{url}/labels/{label}:classify", {"examples": [{"images": IMAGES[0].ravel().tolist()}]}
            )
            assert status == 200 and len(classified["results"][0]) == 10
        status, answer = call(f"{url}/labels/future:predict", {"instances": IMAGES[:1].tolist()})
        assert status == 404 and "version 9 of model 'mnist' is not loaded" in answer["error"]
        status, answer = call(f"{url}/labels/nightly")
        assert status == 400 and "unknown version_label 'nightly'" in answer["error"]
        assert "canary=2" in answer["error"]
