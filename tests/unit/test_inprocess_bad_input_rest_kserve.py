"""The bad-input catalogue for KServe v2 REST on the HTTP port: malformed requests sent as raw bytes
(anything a client library would refuse to build can still be tried). Each case states the exact
HTTP status and a fragment of the `{"error": ...}` message naming the problem; after each, a good
request on the same API must still be answered with the gRPC port's classes (the fake model's: the
server runs in-process, tests/support/inprocess.py)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field

import pytest
import tritonclient.grpc as triton_grpc

from tests.support.fake_model import fake_classes
from tests.support.synthetic import synthetic_arrays

DIGITS, _ = synthetic_arrays(2, seed=61)
ONE = DIGITS[:1]
PIXELS = ONE.ravel().tolist()
HEADER = "Inference-Header-Content-Length"
INFER = "/v2/models/mnist/infer"


@dataclass(frozen=True)
class Case:
    id: str
    status: int
    message: str
    body: bytes = b""
    path: str = INFER
    method: str = "POST"
    headers: dict = field(default_factory=dict)


def tensor(**changes) -> dict:
    value = {"name": "images", "datatype": "UINT8", "shape": [1, 28, 28], "data": PIXELS}
    value.update(changes)
    return {k: v for k, v in value.items() if v is not None}


def infer(case_id: str, status: int, message: str, inputs=None, path: str = INFER, **extra) -> Case:
    body = {"inputs": [tensor()] if inputs is None else inputs, **extra}
    return Case(case_id, status, message, json.dumps(body).encode(), path)


def binary(
    case_id: str, status: int, message: str, size: int = 784, raw: bytes = ONE.tobytes(), header: str | None = None
) -> Case:
    head = json.dumps({"inputs": [tensor(data=None, parameters={"binary_data_size": size})]}).encode()
    return Case(case_id, status, message, head + raw, headers={HEADER: header or str(len(head))})


def ragged() -> list:
    rows = ONE[0].tolist()
    rows[5] = rows[5][:27]
    return [rows]


CASES = [
    Case("malformed-json", 400, "the body is not valid JSON", b'{"inputs": [{"name": "images",'),
    Case("not-an-object", 400, "its JSON part is a JSON array", b"[1, 2, 3]"),
    Case("empty-body", 400, "the JSON part of the body is empty"),
    infer("missing-inputs", 400, "the request needs 'inputs'", inputs=[]),
    Case(
        "unknown-field",
        400,
        "unknown field(s) 'input' in the inference request",
        json.dumps({"input": [tensor()]}).encode(),
    ),
    infer("missing-name", 400, "inputs[0] needs a 'name'", inputs=[tensor(name=None)]),
    infer("missing-datatype", 400, "input 'images' needs a 'datatype'", inputs=[tensor(datatype=None)]),
    infer("missing-shape", 400, "input 'images' needs a 'shape'", inputs=[tensor(shape=None)]),
    infer(
        "missing-data", 400, "input 'images' has neither 'data' nor a 'binary_data_size'", inputs=[tensor(data=None)]
    ),
    infer(
        "two-inputs",
        400,
        "takes exactly one input, 'images'; the request has ['images', 'images']",
        inputs=[tensor(), tensor()],
    ),
    infer(
        "wrong-input-name",
        400,
        "takes exactly one input, 'images'; the request has ['pixels']",
        inputs=[tensor(name="pixels")],
    ),
    infer("datatype-int32", 400, "has datatype INT32; expected UINT8", inputs=[tensor(datatype="INT32")]),
    infer("datatype-bytes", 400, "has datatype BYTES; expected UINT8", inputs=[tensor(datatype="BYTES")]),
    infer(
        "shape-count-mismatch",
        400,
        "has 784 values in 'data'; shape [2, 28, 28] holds 1568",
        inputs=[tensor(shape=[2, 28, 28])],
    ),
    infer("wrong-shape", 400, "has shape [1, 27, 28]; expected [N, 28, 28]", inputs=[tensor(shape=[1, 27, 28])]),
    infer(
        "negative-dims", 400, "has shape [-1, 28, 28] with a negative dimension", inputs=[tensor(shape=[-1, 28, 28])]
    ),
    infer("no-images", 400, "the request has no images", inputs=[tensor(shape=[0, 28, 28], data=[])]),
    infer("ragged-data", 400, "'images.data' is ragged", inputs=[tensor(data=ragged())]),
    infer("string-in-data", 400, 'found a JSON string: "7"', inputs=[tensor(data=["7"] + PIXELS[1:])]),
    infer("null-in-data", 400, "found a JSON null", inputs=[tensor(data=PIXELS[:-1] + [None])]),
    Case(
        "nan-in-data",
        400,
        "NaN is not a JSON number",
        json.dumps({"inputs": [tensor(datatype="FP32", data=[0.0] * 783 + [float("nan")])]}).encode(),
    ),
    infer(
        "uint8-out-of-range",
        400,
        "UINT8 values must be in [0, 255], found values in [0, 256]",
        inputs=[tensor(data=PIXELS[:-1] + [256])],
    ),
    infer(
        "uint8-with-fraction",
        400,
        "UINT8 data must hold integers, found a JSON number: 0.5",
        inputs=[tensor(data=PIXELS[:-1] + [0.5])],
    ),
    infer(
        "fp32-out-of-range",
        400,
        "float pixels must be in [0, 1]",
        inputs=[tensor(datatype="FP32", data=[0.0] * 783 + [2.0])],
    ),
    Case(
        "fp32-huge",
        400,
        "holds a number too large for FP32",
        b'{"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 784], "data": ['
        + b"0.0, " * 783
        + b"1e400]}]}",
    ),
    infer("uint8-huge-integer", 400, "UINT8 values must be in [0, 255]", inputs=[tensor(data=PIXELS[:-1] + [10**30])]),
    binary(
        "header-longer-than-body",
        400,
        "header says the JSON part has 99999 bytes, but the whole body has only",
        header="99999",
    ),
    binary("header-not-a-number", 400, "header must be the JSON part's length in bytes", header="12abc"),
    binary(
        "binary-size-vs-shape",
        400,
        "binary_data_size is 100 bytes; shape [1, 28, 28] of UINT8 needs 784",
        size=100,
        raw=b"\0" * 100,
    ),
    binary("binary-size-past-the-end", 400, "only 700 bytes of binary data are left", raw=b"\0" * 700),
    binary("binary-bytes-left-over", 400, "800 bytes of binary tensor data follow the JSON part", raw=b"\0" * 800),
    infer("unknown-output", 400, "model 'mnist' has no output 'scores'", outputs=[{"name": "scores"}]),
    infer(
        "classification-on-classes",
        400,
        "output 'classes': classification needs a positive count",
        outputs=[{"name": "classes", "parameters": {"classification": 2}}],
    ),
    infer("unknown-model", 404, "model 'nope' is not served", path="/v2/models/nope/infer"),
    infer("unknown-version", 404, "version 7 of model 'mnist' is not loaded", path="/v2/models/mnist/versions/7/infer"),
    infer(
        "bad-version-text",
        400,
        "model_version must be empty (latest) or a positive integer, got 'v1'",
        path="/v2/models/mnist/versions/v1/infer",
    ),
    Case("metadata-unknown-model", 404, "model 'nope' is not served", path="/v2/models/nope", method="GET"),
    Case("config-bad-version", 400, "got 'latest'", path="/v2/models/mnist/versions/latest/config", method="GET"),
    Case("image-upload", 415, "images go to /api/v1/classify", b"\x89PNG\r\n", headers={"Content-Type": "image/png"}),
    Case("wrong-method", 405, "method GET is not allowed on /v2/models/mnist/infer", method="GET"),
]


@pytest.fixture(scope="module")
def connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def grpc_classes(server) -> list[int]:
    with triton_grpc.InferenceServerClient(server.target) as client:
        tensor_in = triton_grpc.InferInput("images", list(DIGITS.shape), "UINT8")
        tensor_in.set_data_from_numpy(DIGITS)
        classes = client.infer("mnist", [tensor_in]).as_numpy("classes").tolist()
    assert classes == fake_classes(DIGITS).tolist()
    return classes


def send(conn: http.client.HTTPConnection, case: Case) -> tuple[int, dict]:
    conn.request(case.method, case.path, body=case.body if case.method != "GET" else None, headers=case.headers)
    response = conn.getresponse()
    text = response.read()
    if response.getheader("Content-Type", "").startswith("application/json") and text:
        return response.status, json.loads(text)
    return response.status, {"raw": text}


def test_the_catalogue_is_big_enough():
    assert len(CASES) >= 16 and len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_request_is_refused_then_a_good_one_answered(connection, grpc_classes, case):
    status, body = send(connection, case)
    assert (status, case.message in body.get("error", "")) == (case.status, True), (
        f"{case.id}: got {status} {body}, expected {case.status} ~ {case.message!r}"
    )
    good = Case(
        "good", 200, "", json.dumps({"inputs": [tensor(shape=list(DIGITS.shape), data=DIGITS.tolist())]}).encode()
    )
    status, body = send(connection, good)
    assert status == 200, body
    assert {o["name"]: o["data"] for o in body["outputs"]}["classes"] == grpc_classes
