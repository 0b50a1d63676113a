"""KServe v2 / Triton's gRPC API on our port, called with tritonclient's InferenceServerClient
(and its generated stub where a test needs requests the client never builds), against the in-process
server and its fake model (tests/support/inprocess.py). The real model through this API is
tests/integration/test_compat_kserve.py."""

from __future__ import annotations

import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from mnist_client import MnistClient
from tests.support.fake_model import RUNTIME_NAME, fake_classes
from tests.support.server_process import metric, scrape_metrics
from tests.support.synthetic import synthetic_arrays

IMAGES, _ = synthetic_arrays(10, seed=31)


@pytest.fixture(scope="module")
def client(server):
    with triton.InferenceServerClient(server.target) as triton_client:
        yield triton_client


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def ours(server):
    with MnistClient(server.target) as mnist:
        predictions = mnist.classify(IMAGES)
    return np.array([p.label for p in predictions]), np.array([p.probabilities for p in predictions])


def infer_input(array: np.ndarray, datatype: str, name: str = "images") -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def test_health_and_readiness(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mnist")
    assert client.is_model_ready("mnist", "1")
    assert not client.is_model_ready("mnist", "2")
    assert not client.is_model_ready("nope")


def test_metadata_and_config_describe_the_served_model(client):
    metadata = client.get_model_metadata("mnist", as_json=True)
    assert (metadata["name"], metadata["versions"], metadata["platform"]) == ("mnist", ["1"], "tensorflow_savedmodel")
    assert metadata["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": ["-1", "28", "28"]}]
    assert {o["name"]: (o["datatype"], o["shape"]) for o in metadata["outputs"]} == {
        "classes": ("INT64", ["-1"]),
        "logits": ("FP32", ["-1", "10"]),
        "probabilities": ("FP32", ["-1", "10"]),
    }
    config = client.get_model_config("mnist", as_json=True)["config"]
    assert (config["name"], config["platform"], config["max_batch_size"]) == ("mnist", "tensorflow_savedmodel", 256)
    assert config["input"] == [{"name": "images", "data_type": "TYPE_UINT8", "dims": ["28", "28"]}]
    assert {o["name"]: o["dims"] for o in config["output"]} == {
        "classes": ["1"],
        "logits": ["10"],
        "probabilities": ["10"],
    }
    assert "dynamic_batching" in config
    assert config["backend"] == RUNTIME_NAME
    server_metadata = client.get_server_metadata(as_json=True)
    assert server_metadata["name"] == "mnist-serving" and "statistics" in server_metadata["extensions"]


@pytest.mark.parametrize(
    "array, datatype",
    [
        pytest.param(IMAGES, "UINT8", id="uint8"),
        pytest.param(IMAGES.astype(np.float32) / 255, "FP32", id="fp32"),
        pytest.param(IMAGES.reshape(-1, 784), "UINT8", id="flat-784"),
        pytest.param(IMAGES[..., None], "UINT8", id="channels-last"),
    ],
)
def test_infer_gives_the_same_classes_as_our_api(client, ours, server, array, datatype):
    before = scrape_metrics(server.http_url)
    result = client.infer("mnist", [infer_input(array, datatype)], request_id="req-7")
    labels, probabilities = ours
    np.testing.assert_array_equal(result.as_numpy("classes"), labels)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=1e-6)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("mnist", "1", "req-7")
    assert labels.tolist() == fake_classes(IMAGES).tolist()
    method = "inference.GRPCInferenceService/ModelInfer"
    assert (
        metric(scrape_metrics(server.http_url), "mnist_serving_requests_total", method=method, code="OK")
        - metric(before, "mnist_serving_requests_total", method=method, code="OK")
        == 1
    )


def test_typed_contents_and_requested_outputs(stub, ours):
    request = service_pb2.ModelInferRequest(
        model_name="mnist",
        model_version="1",
        inputs=[
            service_pb2.ModelInferRequest.InferInputTensor(
                name="images",
                datatype="UINT8",
                shape=IMAGES.shape,
                contents=service_pb2.InferTensorContents(uint_contents=IMAGES.ravel().tolist()),
            )
        ],
        outputs=[service_pb2.ModelInferRequest.InferRequestedOutputTensor(name="classes")],
    )
    response = stub.ModelInfer(request, timeout=10)
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [("classes", "INT64", [len(IMAGES)])]
    np.testing.assert_array_equal(np.frombuffer(response.raw_output_contents[0], "<i8"), ours[0])


def test_classification_extension_gives_the_top_classes(client, ours):
    result = client.infer(
        "mnist", [infer_input(IMAGES, "UINT8")], outputs=[triton.InferRequestedOutput("probabilities", class_count=3)]
    )
    top = result.as_numpy("probabilities")
    assert top.shape == (len(IMAGES), 3)
    labels, probabilities = ours
    for row, label, probs in zip(top, labels, probabilities):
        score, index, name = row[0].decode().split(":")
        assert (int(index), name) == (label, str(label))
        assert float(score) == pytest.approx(probs[label], abs=1e-5)


def test_stream_answers_in_order_and_survives_a_bad_request(client, ours):
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("mnist", [infer_input(IMAGES[:4], "UINT8")], request_id="a")
        client.async_stream_infer("mnist", [infer_input(IMAGES[:1].astype(np.int32), "INT32")], request_id="bad")
        client.async_stream_infer("mnist", [infer_input(IMAGES[4:], "UINT8")], request_id="b")
        got = [answers.get(timeout=10) for _ in range(3)]
    finally:
        client.stop_stream()
    (first, error_a), (_, error_bad), (third, error_b) = got
    assert error_a is None and error_b is None
    assert "input 'images' has datatype INT32" in error_bad.message()
    np.testing.assert_array_equal(np.concatenate([first.as_numpy("classes"), third.as_numpy("classes")]), ours[0])
    assert (first.get_response().id, third.get_response().id) == ("a", "b")


def test_statistics_count_real_work(client):
    def stats():
        return client.get_inference_statistics("mnist", as_json=True)["model_stats"]

    [before] = stats()
    client.infer("mnist", [infer_input(IMAGES[:5], "UINT8")])
    [after] = stats()
    assert (after["name"], after["version"]) == ("mnist", "1")

    def delta(*path) -> int:
        def get(stat):
            for key in path:
                stat = stat.get(key, {}) if isinstance(stat, dict) else stat
            return int(stat or 0)

        return get(after) - get(before)

    assert delta("inference_count") == 5
    assert delta("execution_count") == 1
    assert delta("inference_stats", "success", "count") == 1
    assert delta("inference_stats", "queue", "count") == 1
    assert delta("inference_stats", "compute_infer", "count") == 1
    assert delta("inference_stats", "compute_infer", "ns") > 0
    assert delta("inference_stats", "success", "ns") >= delta("inference_stats", "compute_infer", "ns")
    assert int(after["last_inference"]) >= int(before.get("last_inference", 0))
    assert any(int(b["batch_size"]) == 5 for b in after["batch_stats"])


@pytest.mark.parametrize(
    "call, status, message",
    [
        (lambda c: c.infer("nope", [infer_input(IMAGES, "UINT8")]), "NOT_FOUND", "model 'nope' is not served"),
        (
            lambda c: c.infer("mnist", [infer_input(IMAGES, "UINT8")], model_version="3"),
            "NOT_FOUND",
            "version 3 of model 'mnist' is not loaded; loaded versions: 1",
        ),
        (
            lambda c: c.infer("mnist", [infer_input(IMAGES, "UINT8")], model_version="latest"),
            "INVALID_ARGUMENT",
            "model_version must be empty (latest) or a positive integer, got 'latest'",
        ),
        (
            lambda c: c.infer("mnist", [infer_input(IMAGES, "UINT8", name="pixels")]),
            "INVALID_ARGUMENT",
            "model 'mnist' takes exactly one input, 'images'; the request has ['pixels']",
        ),
        (
            lambda c: c.infer("mnist", [infer_input(IMAGES.astype(np.int32), "INT32")]),
            "INVALID_ARGUMENT",
            "input 'images' has datatype INT32; expected UINT8 (0-255) or FP32 (0-1)",
        ),
        (
            lambda c: c.infer("mnist", [infer_input(np.full((1, 28, 28), np.inf, np.float32), "FP32")]),
            "INVALID_ARGUMENT",
            "input 'images' contains NaN or infinity",
        ),
        (
            lambda c: c.infer("mnist", [infer_input(IMAGES[:, :, :20], "UINT8")]),
            "INVALID_ARGUMENT",
            "input 'images' has shape [10, 28, 20]; expected [N, 28, 28], [N, 784] or [N, 28, 28, 1]",
        ),
        (
            lambda c: c.infer("mnist", [infer_input(IMAGES, "UINT8")], outputs=[triton.InferRequestedOutput("scores")]),
            "INVALID_ARGUMENT",
            "model 'mnist' has no output 'scores'; outputs: classes, logits, probabilities",
        ),
        (lambda c: c.get_model_metadata("nope"), "NOT_FOUND", "model 'nope' is not served"),
        (lambda c: c.get_model_repository_index(), "UNIMPLEMENTED", "not supported by this server"),
        (lambda c: c.register_system_shared_memory("r", "/k", 16), "UNIMPLEMENTED", "not supported by this server"),
    ],
)
def test_errors_have_precise_codes_and_messages(client, call, status, message):
    with pytest.raises(InferenceServerException) as info:
        call(client)
    assert info.value.status() == f"StatusCode.{status}"
    assert message in info.value.message()


def test_raw_contents_of_the_wrong_size_are_invalid(stub):
    request = service_pb2.ModelInferRequest(
        model_name="mnist",
        inputs=[service_pb2.ModelInferRequest.InferInputTensor(name="images", datatype="UINT8", shape=[2, 28, 28])],
        raw_input_contents=[bytes(784)],
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents has 784 bytes; shape [2, 28, 28] of UINT8 needs 1568" in info.value.details()
