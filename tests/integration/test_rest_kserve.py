"""KServe v2 REST (Triton's HTTP API) on the HTTP port, called with the official tritonclient.http
client, raw urllib requests and perf_analyzer -i http; every answer is checked against what the
gRPC port (tritonclient.grpc) says about the same images."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.support import perf_analyzer
from tests.support.server_process import metric, scrape_metrics, served_runtime
from tests.support.synthetic import synthetic_arrays

IMAGES, LABELS = synthetic_arrays(8, seed=53)
INFER_ROUTE = "POST /v2/models/{model}/infer"


@pytest.fixture(scope="module")
def http(server):
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}", concurrency=2)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(server):
    with triton_grpc.InferenceServerClient(server.target) as client:
        yield client


@pytest.fixture(scope="module")
def expected(grpc_client):
    """What the gRPC port answers for IMAGES: (classes, probabilities, top-3 classification)."""
    tensor = triton_grpc.InferInput("images", list(IMAGES.shape), "UINT8")
    tensor.set_data_from_numpy(IMAGES)
    outputs = [triton_grpc.InferRequestedOutput("classes"), triton_grpc.InferRequestedOutput("probabilities")]
    result = grpc_client.infer("mnist", [tensor], outputs=outputs)
    top_3 = [triton_grpc.InferRequestedOutput("probabilities", class_count=3)]
    top = grpc_client.infer("mnist", [tensor], outputs=top_3)
    return result.as_numpy("classes"), result.as_numpy("probabilities"), top.as_numpy("probabilities")


def http_input(array: np.ndarray, datatype: str, binary: bool = True) -> triton_http.InferInput:
    tensor = triton_http.InferInput("images", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def post(url: str, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_health_and_readiness(http):
    assert http.is_server_live() and http.is_server_ready()
    assert http.is_model_ready("mnist") and http.is_model_ready("mnist", "1")
    assert not http.is_model_ready("mnist", "2")
    assert not http.is_model_ready("nope")


def test_server_and_model_metadata(http, grpc_client):
    server_metadata = http.get_server_metadata()
    assert server_metadata["name"] == "mnist-serving"
    assert set(server_metadata["extensions"]) == {
        "classification",
        "model_configuration",
        "statistics",
        "binary_tensor_data",
    }
    metadata = http.get_model_metadata("mnist")
    assert metadata == http.get_model_metadata("mnist", "1")
    assert (metadata["name"], metadata["versions"], metadata["platform"]) == ("mnist", ["1"], "tensorflow_savedmodel")
    assert metadata["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 28, 28]}]
    over_grpc = grpc_client.get_model_metadata("mnist", as_json=True)
    assert [(o["name"], o["datatype"], [str(d) for d in o["shape"]]) for o in metadata["outputs"]] == [
        (o["name"], o["datatype"], o["shape"]) for o in over_grpc["outputs"]
    ]


def test_model_config_is_triton_json_with_numbers(http, grpc_client):
    config = http.get_model_config("mnist")
    assert (config["name"], config["platform"], config["max_batch_size"]) == ("mnist", "tensorflow_savedmodel", 256)
    assert config["backend"] == served_runtime()
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [("images", "TYPE_UINT8", [28, 28])]
    assert {o["name"]: o["dims"] for o in config["output"]} == {"classes": [1], "logits": [10], "probabilities": [10]}
    assert isinstance(config["dynamic_batching"]["max_queue_delay_microseconds"], int)
    over_grpc = grpc_client.get_model_config("mnist", as_json=True)["config"]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == int(
        over_grpc["dynamic_batching"].get("max_queue_delay_microseconds", 0)
    )
    assert config["instance_group"][0]["kind"] == over_grpc["instance_group"][0]["kind"]
    assert http.get_model_config("mnist", "1") == config


def test_statistics_count_http_inferences(http, grpc_client):
    before = http.get_inference_statistics("mnist")["model_stats"][0]
    http.infer("mnist", [http_input(IMAGES[:3], "UINT8")])
    after = http.get_inference_statistics("mnist", "1")["model_stats"][0]
    assert (after["name"], after["version"]) == ("mnist", "1")
    assert after["inference_count"] - before["inference_count"] == 3
    assert after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == 1
    for duration in (
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
        "cache_hit",
        "cache_miss",
    ):  # perf_analyzer reads each as a JSON number
        assert all(isinstance(after["inference_stats"][duration][k], int) for k in ("count", "ns"))
    over_grpc = grpc_client.get_inference_statistics("mnist", as_json=True)["model_stats"][0]
    assert int(over_grpc["inference_count"]) == after["inference_count"]
    everything = http.get_inference_statistics()["model_stats"]
    assert [(s["name"], s["version"]) for s in everything] == [("mnist", "1")]


@pytest.mark.parametrize(
    "array, datatype",
    [
        pytest.param(IMAGES, "UINT8", id="uint8"),
        pytest.param(IMAGES.astype(np.float32) / 255, "FP32", id="fp32"),
        pytest.param(IMAGES.astype(np.float64) / 255, "FP64", id="fp64"),
        pytest.param(IMAGES.reshape(-1, 784), "UINT8", id="flat-784"),
        pytest.param(IMAGES[..., None], "UINT8", id="channels-last"),
    ],
)
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_answers_as_the_grpc_port(http, expected, server, array, datatype, binary):
    before = scrape_metrics(server.http_url)
    outputs = (
        None
        if binary
        else [triton_http.InferRequestedOutput(name, binary_data=False) for name in ("classes", "probabilities")]
    )
    result = http.infer("mnist", [http_input(array, datatype, binary)], outputs=outputs, request_id="rest-1")
    classes, probabilities, _ = expected
    np.testing.assert_array_equal(result.as_numpy("classes"), classes)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=1e-6)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("mnist", "1", "rest-1")
    assert all(("data" in o) != binary for o in response["outputs"])
    assert np.mean(classes == LABELS) > 0.8
    counted = metric(
        scrape_metrics(server.http_url),
        "mnist_serving_http_requests_total",
        route=INFER_ROUTE,
        model="mnist",
        status="200",
    ) - metric(before, "mnist_serving_http_requests_total", route=INFER_ROUTE, model="mnist", status="200")
    assert counted == 1


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_classification_extension(http, expected, binary):
    outputs = [triton_http.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)]
    result = http.infer("mnist", [http_input(IMAGES, "UINT8")], outputs=outputs)
    top = result.as_numpy("probabilities")
    assert top.shape == (len(IMAGES), 3)
    as_bytes = np.vectorize(lambda v: v if isinstance(v, bytes) else v.encode(), otypes=[object])(top)
    np.testing.assert_array_equal(as_bytes, expected[2])
    assert [o["datatype"] for o in result.get_response()["outputs"]] == ["BYTES"]


def test_versioned_infer_and_requested_outputs(http, expected):
    outputs = [triton_http.InferRequestedOutput("classes")]
    result = http.infer("mnist", [http_input(IMAGES, "UINT8")], model_version="1", outputs=outputs)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["classes"]
    np.testing.assert_array_equal(result.as_numpy("classes"), expected[0])


@pytest.mark.parametrize(
    "shape, data",
    [
        pytest.param(list(IMAGES.shape), IMAGES.tolist(), id="nested"),
        pytest.param(list(IMAGES.shape), IMAGES.ravel().tolist(), id="flat"),
        pytest.param([len(IMAGES), 784], IMAGES.reshape(len(IMAGES), -1).tolist(), id="nested-784"),
    ],
)
def test_raw_json_requests(server, expected, shape, data):
    url = f"{server.http_url}/v2/models/mnist/infer"
    status, headers, body = post(
        url, {"id": "raw", "inputs": [{"name": "images", "datatype": "UINT8", "shape": shape, "data": data}]}
    )
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    assert "Inference-Header-Content-Length" not in headers
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["classes"]["shape"] == [len(IMAGES)] and outputs["classes"]["datatype"] == "INT64"
    assert outputs["classes"]["data"] == expected[0].tolist()
    np.testing.assert_allclose(np.array(outputs["probabilities"]["data"]).reshape(-1, 10), expected[1], atol=1e-6)


def test_big_json_request_is_parsed_off_the_loop_and_answered(server, expected):
    copies = 50  # 400 images, about 1 MB of JSON: past the size that is parsed on a worker thread
    images = np.tile(IMAGES, (copies, 1, 1))
    status, _, body = post(
        f"{server.http_url}/v2/models/mnist/infer",
        {
            "inputs": [{"name": "images", "datatype": "UINT8", "shape": list(images.shape), "data": images.tolist()}],
            "outputs": [{"name": "classes"}],
        },
    )
    assert status == 200, body
    assert body["outputs"][0]["data"] == np.tile(expected[0], copies).tolist()


def test_raw_json_floats_and_classification(server, expected):
    floats = np.round(IMAGES.astype(np.float64) / 255, 6)  # rounds back to the same pixels
    status, _, body = post(
        f"{server.http_url}/v2/models/mnist/versions/1/infer",
        {
            "inputs": [{"name": "images", "datatype": "FP32", "shape": list(IMAGES.shape), "data": floats.tolist()}],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
        },
    )
    assert status == 200, body
    [output] = body["outputs"]
    assert [int(text.split(":")[1]) for text in output["data"]] == expected[0].tolist()


def test_unknown_routes_and_unsupported_extensions(server):
    status, _, body = post(f"{server.http_url}/v2/models/mnist/explain", {})
    assert status == 404 and "no route for POST /v2/models/mnist/explain" in body["error"]
    status, _, body = post(f"{server.http_url}/v2/repository/index", {})
    assert status == 501 and "not supported" in body["error"]
    status, _, body = post(f"{server.http_url}/v2/systemsharedmemory/region/r/register", {})
    assert status == 501 and "shared memory" in body["error"]


@pytest.mark.slow
def test_perf_analyzer_over_http_without_errors(server):
    requests = 200
    before = scrape_metrics(server.http_url)
    run = perf_analyzer.run(
        f"127.0.0.1:{server.http_port}",
        service_kind="triton",
        model="mnist",
        concurrency=4,
        request_count=requests,
        protocol="http",
        timeout_s=180,
    )
    assert run.returncode == 0, run.output[-4000:]
    assert "error" not in run.output.lower(), run.output[-4000:]
    assert len(run.requests) == requests and run.completed == requests
    after = scrape_metrics(server.http_url)

    def answered(status: str) -> float:
        return metric(after, "mnist_serving_http_requests_total", route=INFER_ROUTE, status=status) - metric(
            before, "mnist_serving_http_requests_total", route=INFER_ROUTE, status=status
        )

    assert answered("200") == requests
    assert sum(answered(status) for status in ("400", "404", "413", "429", "500", "503", "504")) == 0
    assert "Successful request count" in run.output  # it read our statistics over HTTP


def test_token_rules_of_the_grpc_service_apply_and_health_stays_open(start_server, exported_model, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("rest-secret-0123456789\nhealth-only-0123456789 grpc.health.v1.Health\n")
    with start_server(["--model-dir", str(exported_model), "--auth-token-file", str(tokens)]) as private:
        client = triton_http.InferenceServerClient(f"127.0.0.1:{private.http_port}")
        try:
            assert client.is_server_live() and client.is_server_ready()  # no token needed
            for token, status in ((None, "401"), ("health-only-0123456789", "403"), ("wrong", "401")):
                headers = {"Authorization": f"Bearer {token}"} if token else None
                with pytest.raises(InferenceServerException) as refused:
                    client.get_model_metadata("mnist", headers=headers)
                assert refused.value.status() == status
            good = {"Authorization": "Bearer rest-secret-0123456789"}
            assert client.get_model_metadata("mnist", headers=good)["name"] == "mnist"
            result = client.infer("mnist", [http_input(IMAGES[:2], "UINT8")], headers=good)
            assert result.as_numpy("classes").shape == (2,)
        finally:
            client.close()
