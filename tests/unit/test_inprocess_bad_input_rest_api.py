"""Bad input on our HTTP API (/api/v1, web/classify.py) and on what every route of the port shares
(unknown routes and methods, content types, the body limit), against the in-process server and its
fake model (tests/support/inprocess.py): each case gets its exact HTTP status and a message naming
what was wrong, then a good upload is answered correctly (the fake's class of the prepared image).
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest

from mnist_serving.images import decode_image
from tests.support.catalogue import blank, encode
from tests.support.fake_model import fake_classes
from tests.support.server_process import HOST
from tests.support.synthetic import synthetic_arrays

IMAGES, _ = synthetic_arrays(2, seed=45)
PNG = encode(IMAGES[0], "PNG")
PNG_CLASS = int(fake_classes(decode_image(PNG)[None])[0])  # the fake model's answer to the prepared upload
CLASSIFY = "/api/v1/classify"


def call(
    url: str,
    body: bytes | None = None,
    content_type: str | None = None,
    method: str | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict, dict]:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def form(*parts: tuple[str, str | None, bytes, str | None]) -> tuple[bytes, str]:
    """multipart/form-data of (field name, file name or None, bytes, content type or None)."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, filename, data, content_type in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def as_json(value) -> bytes:
    return json.dumps(value).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


NO_FILE = form(("model", None, b"mnist", None))
UNKNOWN_FIELD = form(("colour", None, b"blue", None), ("image", "a.png", PNG, "image/png"))
BROKEN_FILE = form(
    ("image", "a.png", PNG, "image/png"), ("image", "b.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")
)

# (name, method, path, body, content type, status, message fragment)
CASES = [
    ("unknown route", "GET", "/v3/models", None, None, 404, "no route for GET /v3/models"),
    (
        "wrong method",
        "PUT",
        CLASSIFY,
        b"x",
        "image/png",
        405,
        "method PUT is not allowed on /api/v1/classify; allowed: POST",
    ),
    ("GET on an upload route", "GET", CLASSIFY, None, None, 405, "allowed: POST"),
    (
        "unknown model in the query",
        "POST",
        CLASSIFY + "?model=digits",
        PNG,
        "image/png",
        404,
        "model 'digits' is not served; served models: mnist",
    ),
    (
        "version not a number",
        "POST",
        CLASSIFY + "?version=latest",
        PNG,
        "image/png",
        400,
        "the query's version must be a positive integer (or absent for the latest), got 'latest'",
    ),
    (
        "version not loaded",
        "POST",
        CLASSIFY + "?version=7",
        PNG,
        "image/png",
        404,
        "version 7 of model 'mnist' is not loaded",
    ),
    (
        "unknown query parameter",
        "POST",
        CLASSIFY + "?modle=mnist",
        PNG,
        "image/png",
        400,
        "unknown query parameter(s) modle",
    ),
    ("broken PNG", "POST", CLASSIFY, b"\x89PNG\r\n\x1a\ngarbage", "image/png", 400, "image 0:"),
    ("empty image body", "POST", CLASSIFY, b"", "image/png", 400, "image 0:"),
    ("text posing as a JPEG", "POST", CLASSIFY, b"hello, I am a JPEG", "image/jpeg", 400, "image 0:"),
    ("image larger than the pixel limit", "POST", CLASSIFY, blank(9000, 9000, "PNG"), "image/png", 400, "image 0:"),
    (
        "raw bytes content type",
        "POST",
        CLASSIFY,
        PNG,
        "application/octet-stream",
        415,
        "got Content-Type application/octet-stream",
    ),
    ("malformed JSON", "POST", CLASSIFY, b'{"images": [', "application/json", 400, "the body is not valid JSON"),
    ("JSON array", "POST", CLASSIFY, b"[1, 2]", "application/json", 400, "got a JSON array"),
    ("empty JSON body", "POST", CLASSIFY, b"", "application/json", 400, "the body is empty"),
    (
        "unknown JSON field",
        "POST",
        CLASSIFY,
        as_json({"imgs": []}),
        "application/json",
        400,
        "the body is not a ClassifyRequest",
    ),
    # protobuf's JSON parser skips characters outside the base64 alphabet: "%%%" is zero bytes
    (
        "pixels not base64",
        "POST",
        CLASSIFY,
        as_json({"images": [{"pixels": "%%%"}]}),
        "application/json",
        400,
        "image 0: pixels has 0 bytes, expected 28*28 = 784",
    ),
    (
        "pixels of the wrong length",
        "POST",
        CLASSIFY,
        as_json({"images": [{"pixels": b64(bytes(100))}]}),
        "application/json",
        400,
        "image 0: pixels has 100 bytes, expected 28*28 = 784",
    ),
    (
        "no images in JSON",
        "POST",
        CLASSIFY,
        as_json({"model": {"name": "mnist"}}),
        "application/json",
        400,
        "the request has no images",
    ),
    (
        "too many packed images",
        "POST",
        CLASSIFY,
        as_json({"packed": {"data": b64(bytes(784 * 4097)), "count": 4097, "height": 28, "width": 28}}),
        "application/json",
        400,
        "the request has 4097 images, the limit is 4096 per request",
    ),
    ("form without a file", "POST", CLASSIFY, NO_FILE[0], NO_FILE[1], 400, "the form holds no image file"),
    (
        "form with an unknown field",
        "POST",
        CLASSIFY,
        UNKNOWN_FIELD[0],
        UNKNOWN_FIELD[1],
        400,
        "the form field 'colour' is neither an image file nor one of model, version, request_id",
    ),
    ("form with a broken second file", "POST", CLASSIFY, BROKEN_FILE[0], BROKEN_FILE[1], 400, "image 1:"),
    ("model info of an unknown model", "GET", "/api/v1/models/digits", None, None, 404, "model 'digits' is not served"),
]


def assert_good_upload(server) -> None:
    status, answer, _ = call(server.http_url + CLASSIFY, PNG, "image/png")
    assert status == 200, answer
    assert [p["label"] for p in answer["predictions"]] == [PNG_CLASS]


@pytest.mark.parametrize("name,method,path,body,content_type,status,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_its_status_and_message(server, name, method, path, body, content_type, status, message):
    got, answer, headers = call(server.http_url + path, body, content_type, method)
    assert (got, message in answer.get("error", "")) == (status, True), f"{name}: {got} {answer}"
    assert headers["Content-Type"].startswith("application/json")
    if status == 405:
        assert headers["Allow"] == "POST"
    assert_good_upload(server)


def test_a_body_declared_over_the_limit_gets_413_from_its_headers(server):
    with socket.create_connection((HOST, server.http_port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 17000000\r\n\r\n"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"larger than the limit of 16777216 bytes (--max-receive-message-bytes)" in answer
    assert_good_upload(server)


def test_the_catalogue_holds_at_least_40_cases_over_the_three_apis():
    from tests.unit import test_inprocess_bad_input_rest_kserve, test_inprocess_bad_input_rest_tfserving

    total = (
        len(CASES)
        + 1
        + len(test_inprocess_bad_input_rest_tfserving.CASES)
        + len(test_inprocess_bad_input_rest_kserve.CASES)
    )
    assert total >= 40, total


def test_uint8_pixels_as_a_json_array_are_not_our_format(server):
    """Our JSON is the ClassifyRequest's proto JSON (bytes as base64); number arrays belong to the
    TF Serving and KServe routes, and the message says where to send them."""
    status, answer, _ = call(
        server.http_url + CLASSIFY, as_json({"images": [{"pixels": np.zeros(784).tolist()}]}), "application/json"
    )
    assert status == 400
    assert "the body is not a ClassifyRequest" in answer["error"]
    assert "arrays of pixel numbers go to /v1/models/{model}:predict" in answer["error"]
