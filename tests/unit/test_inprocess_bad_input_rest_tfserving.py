"""Bad input on TF Serving's REST API (web/tfserving.py), against the in-process server and its fake
model (tests/support/inprocess.py): each case gets its exact HTTP status and a message naming what
was wrong, and the server answers a good request on the same API correctly right after.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.support.fake_model import fake_classes
from tests.support.synthetic import synthetic_arrays

IMAGES, _ = synthetic_arrays(2, seed=44)
IMAGE = IMAGES[0].tolist()
ZEROS = np.zeros((28, 28), np.uint8).tolist()
PREDICT = "/v1/models/mnist:predict"
CLASSIFY = "/v1/models/mnist:classify"
GOOD_PREDICT = {"instances": IMAGES.tolist(), "output_filter": ["classes"]}


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


def with_pixel(value) -> bytes:
    """A one-image row-format body whose first pixel is `value`, written as raw JSON text."""
    rows = json.dumps(ZEROS)
    return ('{"instances": [' + rows.replace("0", value, 1) + "]}").encode()


def b64_text(data: bytes) -> str:
    return base64.b64encode(data).decode()


# (name, path, body, content type, status, message fragment); bodies are JSON values or raw bytes
CASES = [
    ("malformed JSON", PREDICT, b'{"instances": [[1, 2', "application/json", 400, "not valid JSON"),
    ("empty body", PREDICT, b"", "application/json", 400, "the body is empty"),
    ("not an object", PREDICT, [IMAGE], "application/json", 400, "got a JSON array"),
    ("instances and inputs", PREDICT, {"instances": [IMAGE], "inputs": [IMAGE]}, "application/json", 400, "not both"),
    (
        "neither instances nor inputs",
        PREDICT,
        {"signature_name": "serving_default"},
        "application/json",
        400,
        "has neither",
    ),
    ("instances not an array", PREDICT, {"instances": 7}, "application/json", 400, "'instances' must be an array"),
    ("empty instances", PREDICT, {"instances": []}, "application/json", 400, "the request has no images"),
    (
        "wrong shape",
        PREDICT,
        {"instances": [IMAGE[:27]]},
        "application/json",
        400,
        "input 'images' has shape [1, 27, 28]",
    ),
    ("wrong rank", PREDICT, {"inputs": [1, 2, 3]}, "application/json", 400, "input 'images' has shape [3]"),
    (
        "one image without a batch",
        PREDICT,
        {"inputs": IMAGE},
        "application/json",
        400,
        "input 'images' has shape [28, 28]",
    ),
    ("ragged arrays", PREDICT, {"instances": [IMAGE, IMAGE[:20]]}, "application/json", 400, "ragged"),
    ("string pixel", PREDICT, with_pixel('"7"'), "application/json", 400, 'found a JSON string: "7"'),
    ("boolean pixel", PREDICT, with_pixel("true"), "application/json", 400, "found a JSON boolean"),
    ("null pixel", PREDICT, with_pixel("null"), "application/json", 400, "found a JSON null"),
    ("NaN literal", PREDICT, with_pixel("NaN"), "application/json", 400, "NaN is not a JSON number"),
    ("NaN string", PREDICT, with_pixel('"NaN"'), "application/json", 400, 'found a JSON string: "NaN"'),
    ("integer over 255", PREDICT, with_pixel("256"), "application/json", 400, "integer pixels must be in [0, 255]"),
    ("negative integer", PREDICT, with_pixel("-1"), "application/json", 400, "integer pixels must be in [0, 255]"),
    ("float over 1", PREDICT, with_pixel("1.5"), "application/json", 400, "float pixels must be in [0, 1]"),
    ("1e999", PREDICT, with_pixel("1e999"), "application/json", 400, "too large for a pixel"),
    (
        "huge integer",
        PREDICT,
        with_pixel("123456789012345678901234567890"),
        "application/json",
        400,
        "integer pixels must be in [0, 255]",
    ),
    (
        "wrong signature_name",
        PREDICT,
        {"signature_name": "classify_objects", "instances": [IMAGE]},
        "application/json",
        400,
        "signature 'classify_objects' not found in model 'mnist'",
    ),
    (
        "signature_name not a string",
        PREDICT,
        {"signature_name": 3, "instances": [IMAGE]},
        "application/json",
        400,
        "'signature_name' must be a string",
    ),
    (
        "unknown model",
        "/v1/models/fashion:predict",
        {"instances": [IMAGE]},
        "application/json",
        404,
        "model 'fashion' is not served; served models: mnist",
    ),
    (
        "unknown version",
        "/v1/models/mnist/versions/7:predict",
        {"instances": [IMAGE]},
        "application/json",
        404,
        "version 7 of model 'mnist' is not loaded; loaded versions: 1",
    ),
    (
        "unknown label",
        "/v1/models/mnist/labels/stable:predict",
        {"instances": [IMAGE]},
        "application/json",
        400,
        "unknown version_label 'stable' for model 'mnist'",
    ),
    (
        "bad version text",
        "/v1/models/mnist/versions/v1:predict",
        {"instances": [IMAGE]},
        "application/json",
        400,
        "the version in the URL must be a positive integer, got 'v1'",
    ),
    (
        "version zero",
        "/v1/models/mnist/versions/0:predict",
        {"instances": [IMAGE]},
        "application/json",
        400,
        "must be a positive integer, got '0'",
    ),
    (
        "extra unknown field",
        PREDICT,
        {"instances": [IMAGE], "instance": [IMAGE]},
        "application/json",
        400,
        "unknown field(s) 'instance' in the predict request",
    ),
    ("image/png content type", PREDICT, b"\x89PNG\r\n\x1a\n", "image/png", 415, "Content-Type image/png"),
    (
        "unknown output",
        PREDICT,
        {"instances": [IMAGE], "output_filter": ["scores"]},
        "application/json",
        400,
        "output_filter names 'scores', not an output of signature 'serving_default'",
    ),
    (
        "unknown input name",
        PREDICT,
        {"inputs": {"image": [IMAGE]}},
        "application/json",
        400,
        "'inputs' names ['image']; the signature takes one input, 'images'",
    ),
    (
        "instance object with a wrong key",
        PREDICT,
        {"instances": [{"images": IMAGE}, {"pixels": IMAGE}]},
        "application/json",
        400,
        "instance 1 must be an object with the one key 'images'",
    ),
    (
        "b64 of the wrong length",
        PREDICT,
        {"instances": [{"b64": b64_text(b"abc")}]},
        "application/json",
        400,
        "'b64' decodes to 3 bytes; an image is 784 bytes",
    ),
    (
        "b64 not base64",
        PREDICT,
        {"instances": [{"b64": "not base64!"}]},
        "application/json",
        400,
        "'b64' is not valid base64",
    ),
    (
        "b64 mixed with arrays",
        PREDICT,
        {"instances": [{"b64": b64_text(bytes(784))}, IMAGE]},
        "application/json",
        400,
        'instances[1] is a JSON array among {"b64": ...} images',
    ),
    (
        "regress",
        "/v1/models/mnist:regress",
        {"examples": [{"x": 1.0}]},
        "application/json",
        501,
        "regress: model 'mnist' is a classifier",
    ),
    (
        "unknown verb",
        "/v1/models/mnist:explain",
        {"instances": [IMAGE]},
        "application/json",
        404,
        "no route for POST /v1/models/mnist:explain",
    ),
    (
        "classify without examples",
        CLASSIFY,
        {"context": {}},
        "application/json",
        400,
        "'examples' must be a non-empty array",
    ),
    (
        "classify example not an object",
        CLASSIFY,
        {"examples": [[1, 2]]},
        "application/json",
        400,
        "'examples[0]' must be a JSON object of features",
    ),
    (
        "classify feature nested",
        CLASSIFY,
        {"examples": [{"images": IMAGE}]},
        "application/json",
        400,
        "must be a flat array of 784 pixels",
    ),
    (
        "classify feature too short",
        CLASSIFY,
        {"examples": [{"images": [0] * 100}]},
        "application/json",
        400,
        "int64_list has 100 values, expected 784",
    ),
    (
        "classify feature missing",
        CLASSIFY,
        {"examples": [{"image": [0] * 784}]},
        "application/json",
        400,
        "example 0, feature 'images' is missing",
    ),
    (
        "classify pixel out of range",
        CLASSIFY,
        {"examples": [{"images": [300] * 784}]},
        "application/json",
        400,
        "'examples[0].images': integer pixels must be in [0, 255]",
    ),
    (
        "classify string feature",
        CLASSIFY,
        {"examples": [{"images": "abc"}]},
        "application/json",
        400,
        "'examples[0].images' must hold numbers (pixels), found a JSON string",
    ),
    (
        "classify b64 in context not base64",
        CLASSIFY,
        {"context": {"images": {"b64": "%%%"}}, "examples": [{}]},
        "application/json",
        400,
        "context.images: 'b64' is not valid base64",
    ),
    (
        "classify unknown field",
        CLASSIFY,
        {"examples": [{"images": [0] * 784}], "inputs": []},
        "application/json",
        400,
        "unknown field(s) 'inputs' in the classify request",
    ),
    (
        "status of an unknown version",
        "/v1/models/mnist/versions/3",
        None,
        "",
        404,
        "version 3 of model 'mnist' is not loaded",
    ),
    ("metadata of an unknown model", "/v1/models/fashion/metadata", None, "", 404, "model 'fashion' is not served"),
]


@pytest.fixture(scope="module")
def expected_classes(server) -> list[int]:
    status, answer = call(f"{server.http_url}{PREDICT}", GOOD_PREDICT)
    assert status == 200
    assert answer["predictions"] == fake_classes(IMAGES).tolist()
    return answer["predictions"]


def assert_good_request_answered(server, path: str, expected_classes: list[int]) -> None:
    """The same API answers a good request right after the bad one."""
    if path.endswith(":classify"):
        status, answer = call(f"{server.http_url}{CLASSIFY}", {"examples": [{"images": IMAGES[0].ravel().tolist()}]})
        assert status == 200
        scores = [score for _, score in answer["results"][0]]
        assert int(np.argmax(scores)) == expected_classes[0]
    elif ":" not in path.rsplit("/", 1)[-1]:
        status, answer = call(f"{server.http_url}/v1/models/mnist")
        assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    else:
        status, answer = call(f"{server.http_url}{PREDICT}", GOOD_PREDICT)
        assert (status, answer) == (200, {"predictions": expected_classes})


def test_there_are_enough_cases():
    assert len(CASES) >= 16


@pytest.mark.parametrize("name, path, body, content_type, status, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_precisely(server, expected_classes, name, path, body, content_type, status, fragment):
    got_status, answer = call(f"{server.http_url}{path}", body, content_type=content_type)
    assert (got_status, set(answer)) == (status, {"error"}), answer
    assert fragment in answer["error"], answer["error"]
    assert_good_request_answered(server, path, expected_classes)
