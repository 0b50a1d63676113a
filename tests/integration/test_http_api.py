"""Our HTTP API (/api/v1) and the HTTP port's shared behaviour, against the real server: an uploaded
PNG, a multipart form and JSON answer exactly what gRPC Classify answers; probes; metrics by route
and status; security headers; and SIGTERM: /readyz 503 first, accepted requests answered, new
ones refused."""

from __future__ import annotations

import base64
import json
import signal
import threading
import urllib.error
import urllib.request
import uuid

import grpc
import numpy as np

from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.catalogue import encode
from tests.support.server_process import ServerProcess, http_get, metric, scrape_metrics, wait_for_queue_depth
from tests.support.synthetic import synthetic_arrays

IMAGES, LABELS = synthetic_arrays(6, seed=46)
CLASSIFY = "/api/v1/classify"


def post(url: str, body: bytes, content_type: str, timeout: float = 60.0) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def grpc_classify(server, images: list[bytes]) -> pb.ClassifyResponse:
    with grpc.insecure_channel(server.target) as channel:
        request = pb.ClassifyRequest(images=[pb.Image(encoded=data) for data in images])
        return classifier_pb2_grpc.ClassifierStub(channel).Classify(request, timeout=30)


def assert_same_as_grpc(answer: dict, expected: pb.ClassifyResponse) -> None:
    assert answer["model_name"] == expected.model_name
    assert answer["model_version"] == expected.model_version
    assert [p["label"] for p in answer["predictions"]] == [p.label for p in expected.predictions]
    assert [p["class_name"] for p in answer["predictions"]] == [p.class_name for p in expected.predictions]
    got = np.array([p["probabilities"] for p in answer["predictions"]], np.float32)
    want = np.array([list(p.probabilities) for p in expected.predictions], np.float32)
    np.testing.assert_array_equal(got, want)


def test_an_uploaded_png_answers_what_grpc_classify_answers(server):
    png = encode(IMAGES[0], "PNG")
    status, answer, headers = post(server.http_url + CLASSIFY, png, "image/png")
    assert status == 200, answer
    assert headers["Content-Type"].startswith("application/json")
    assert_same_as_grpc(answer, grpc_classify(server, [png]))
    assert answer["predictions"][0]["label"] == LABELS[0]


def test_a_jpeg_on_a_light_background_is_prepared_like_a_digit(server):
    photo = np.kron(255 - IMAGES[1], np.ones((4, 4), np.uint8))  # 112x112, dark ink on white
    jpeg = encode(photo, "JPEG", quality=95)
    status, answer, _ = post(server.http_url + CLASSIFY + "?model=mnist&version=1", jpeg, "image/jpeg")
    assert status == 200, answer
    assert_same_as_grpc(answer, grpc_classify(server, [jpeg]))
    assert answer["model_version"] == 1


def test_a_multipart_form_with_several_files_answers_in_order(server):
    files = [encode(image, "PNG") for image in IMAGES[:3]]
    boundary = uuid.uuid4().hex
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nmnist\r\n'.encode()
    for index, data in enumerate(files):
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{index}.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    status, answer, _ = post(server.http_url + CLASSIFY, body, f"multipart/form-data; boundary={boundary}")
    assert status == 200, answer
    assert_same_as_grpc(answer, grpc_classify(server, files))
    assert [p["label"] for p in answer["predictions"]] == LABELS[:3].tolist()


def test_json_takes_a_classify_request_raw_pixels_or_packed(server):
    pixels = {
        "images": [{"pixels": base64.b64encode(image.tobytes()).decode()} for image in IMAGES],
        "request_id": "r-1",
    }
    status, answer, _ = post(server.http_url + CLASSIFY, json.dumps(pixels).encode(), "application/json")
    assert status == 200, answer
    assert answer["request_id"] == "r-1"
    assert [p["label"] for p in answer["predictions"]] == LABELS.tolist()
    packed = {
        "packed": {"data": base64.b64encode(IMAGES.tobytes()).decode(), "count": len(IMAGES), "height": 28, "width": 28}
    }
    status, again, _ = post(server.http_url + CLASSIFY, json.dumps(packed).encode(), "application/json")
    assert status == 200, again
    assert again["predictions"] == answer["predictions"]


def test_model_listing_and_info(server):
    status, listing = http_get(server.http_url + "/api/v1/models")
    assert status == 200
    listing = json.loads(listing)
    assert listing["default_model"] == "mnist"
    (model,) = listing["models"]
    assert (model["name"], model["version"], model["input_shape"]) == ("mnist", 1, [-1, 28, 28])
    assert len(model["class_names"]) == 10
    status, info = http_get(server.http_url + "/api/v1/models/mnist?version=1")
    assert status == 200 and json.loads(info) == model


def test_requests_are_counted_by_route_model_and_status(server):
    before = scrape_metrics(server.http_url)
    post(server.http_url + CLASSIFY, encode(IMAGES[0], "PNG"), "image/png")
    post(server.http_url + CLASSIFY, b"not an image", "image/png")
    post(server.http_url + CLASSIFY + "?model=nope", b"x", "image/png")
    http_get(server.http_url + "/no/such/route")
    after = scrape_metrics(server.http_url)
    name = "mnist_serving_http_requests_total"
    route = "POST /api/v1/classify"
    for labels, grown in (
        ({"route": route, "model": "mnist", "status": "200"}, 1),
        ({"route": route, "model": "mnist", "status": "400"}, 1),
        ({"route": route, "model": "none", "status": "404"}, 1),
        ({"route": "unmatched", "model": "none", "status": "404"}, 1),
    ):
        assert metric(after, name, **labels) - metric(before, name, **labels) == grown, labels
    assert metric(after, "mnist_serving_images_total", model="mnist") > metric(
        before, "mnist_serving_images_total", model="mnist"
    )


def test_every_answer_carries_the_security_headers(server):
    for path in ("/readyz", "/no/such/route", "/"):
        request = urllib.request.Request(server.http_url + path)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                headers = response.headers
        except urllib.error.HTTPError as exc:
            headers = exc.headers
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
    assert (
        "default-src 'none'"
        in urllib.request.urlopen(server.http_url + "/", timeout=10).headers["Content-Security-Policy"]
    )


def test_sigterm_readyz_503_first_accepted_requests_answered_new_ones_refused(exported_model):
    """One request of 3,000 images at 8 per model call keeps the server busy while it drains."""
    big = np.random.default_rng(3).integers(0, 256, (3000, 28, 28), dtype=np.uint8)
    body = json.dumps(
        {"packed": {"data": base64.b64encode(big.tobytes()).decode(), "count": len(big), "height": 28, "width": 28}}
    ).encode()
    flags = [
        "--model-dir",
        str(exported_model),
        "--max-batch-size",
        "8",
        "--runtime",
        "tensorflow",
        "--grace-period",
        "60",
    ]
    with ServerProcess(flags) as server:
        outcome: dict = {}

        def send_big():
            outcome["answer"] = post(server.http_url + CLASSIFY, body, "application/json", timeout=90)

        sender = threading.Thread(target=send_big)
        sender.start()
        wait_for_queue_depth(server.http_url, 1, "the big request never reached the queue", timeout_s=30)
        server.proc.send_signal(signal.SIGTERM)
        sender.join(90)
        assert server.proc.wait(60) == 0
        status, answer, _ = outcome["answer"]
        assert status == 200, answer
        assert len(answer["predictions"]) == len(big)
        log = server.log_text()
        assert log.index("draining: health NOT_SERVING, /readyz 503") < log.index("stopped")
    try:  # and afterwards the port takes nothing
        status, _ = http_get(server.http_url + "/readyz", timeout=2)
    except OSError:
        status = None
    assert status is None
