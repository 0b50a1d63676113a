"""The bad-input catalogue, part 3: KServe v2's gRPC protocol (inference.GRPCInferenceService).

Same rules as part 1 (test_inprocess_bad_input_grpc.py): exact code, a message naming the problem,
then a good request on the same protocol answered with the right labels (the fake model's rule: the
server runs in-process, tests/support/inprocess.py).
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as kserve

from tests.support.catalogue import Case, assert_refused
from tests.support.fake_model import fake_classes
from tests.support.synthetic import synthetic_arrays

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
INFER = "/inference.GRPCInferenceService/ModelInfer"
KSERVE_METADATA = "/inference.GRPCInferenceService/ModelMetadata"

DIGITS, _ = synthetic_arrays(4, seed=43)
ONE = DIGITS[0].tobytes()


def infer(
    case_id: str,
    code,
    message: str,
    *,
    name="images",
    datatype="UINT8",
    shape=(1, 28, 28),
    raw: list[bytes] | None = None,
    model="mnist",
    version="",
    outputs=(),
    **contents,
) -> Case:
    request = kserve.ModelInferRequest(model_name=model, model_version=version, id=case_id)
    if name is not None:
        entry = request.inputs.add(name=name, datatype=datatype, shape=list(shape))
        for field, items in contents.items():
            getattr(entry.contents, field).extend(items)
    request.raw_input_contents.extend([ONE] if raw is None and not contents else raw or [])
    for output in outputs:
        request.outputs.append(output)
    return Case(f"kserve-infer-{case_id}", INFER, request, code, message)


def requested(name: str, **parameters) -> kserve.ModelInferRequest.InferRequestedOutputTensor:
    output = kserve.ModelInferRequest.InferRequestedOutputTensor(name=name)
    for key, value in parameters.items():
        output.parameters[key].int64_param = value
    return output


KSERVE = [
    infer(
        "no-inputs", INVALID, "model 'mnist' takes exactly one input, 'images'; the request has none", name=None, raw=[]
    ),
    infer("wrong-input-name", INVALID, "the request has ['input_1']", name="input_1"),
    infer("datatype-bytes", INVALID, "input 'images' has datatype BYTES; expected UINT8", datatype="BYTES"),
    infer("datatype-empty", INVALID, "input 'images' has datatype (empty)", datatype=""),
    infer("datatype-int64", INVALID, "has datatype INT64", datatype="INT64", raw=[bytes(784 * 8)]),
    infer("rank-2-wrong-width", INVALID, "input 'images' has shape [1, 28]; expected", shape=(1, 28), raw=[ONE[:28]]),
    infer("negative-batch-dimension", INVALID, "has shape [-1, 784] with a negative dimension", shape=(-1, 784)),
    infer(
        "raw-short", INVALID, "raw_input_contents has 783 bytes; shape [1, 28, 28] of UINT8 needs 784", raw=[ONE[:-1]]
    ),
    infer("raw-two-entries", INVALID, "raw_input_contents has 2 entries for 1 input", raw=[ONE, ONE]),
    infer(
        "raw-and-contents", INVALID, "give contents or raw_input_contents, not both", raw=[ONE], uint_contents=list(ONE)
    ),
    infer(
        "fp32-nan",
        INVALID,
        "input 'images' contains NaN or infinity",
        datatype="FP32",
        shape=(1, 784),
        fp32_contents=[float("nan")] * 784,
    ),
    infer(
        "fp32-out-of-range",
        INVALID,
        "float pixels must be in [0, 1]",
        datatype="FP32",
        shape=(1, 784),
        fp32_contents=[255.0] * 784,
    ),
    infer("uint8-256", INVALID, "UINT8 values must be in [0, 255], found 256", uint_contents=[256] + [0] * 783),
    infer(
        "contents-count",
        INVALID,
        "has 10 values in contents.uint_contents; shape [1, 28, 28] holds 784",
        uint_contents=[0] * 10,
    ),
    infer("empty-batch", INVALID, "the request has no images", shape=(0, 784), raw=[b""]),
    infer("100000-images", INVALID, "the request has 100000 images, the limit is 4096", shape=(100_000, 784)),
    infer(
        "dimensions-overflowing-int64",
        INVALID,
        "has shape [1, 4294967296, 4294967296]",
        shape=(1, 2**32, 2**32),
        raw=[b""],
    ),
    infer("unknown-model", NOT_FOUND, "model 'fashion' is not served", model="fashion"),
    infer("unknown-version", NOT_FOUND, "version 3 of model 'mnist' is not loaded", version="3"),
    infer(
        "version-not-a-number",
        INVALID,
        "model_version must be empty (latest) or a positive integer, got 'v1'",
        version="v1",
    ),
    infer("unknown-output", INVALID, "model 'mnist' has no output 'scores'; outputs:", outputs=[requested("scores")]),
    infer(
        "classification-on-classes",
        INVALID,
        "classification needs a positive count and works on 'probabilities'",
        outputs=[requested("classes", classification=3)],
    ),
    infer(
        "classification-negative",
        INVALID,
        "classification needs a positive count",
        outputs=[requested("probabilities", classification=-1)],
    ),
    Case(
        "kserve-infer-garbage-bytes", INFER, b"\x12\x03abc\x22\xff", INVALID, "not a valid inference.ModelInferRequest"
    ),
    Case(
        "kserve-metadata-unknown-model",
        KSERVE_METADATA,
        kserve.ModelMetadataRequest(name="nope"),
        NOT_FOUND,
        "model 'nope' is not served",
    ),
]


@pytest.fixture(scope="module")
def good(channel):
    """A good request whose labels must match the answer given before any bad input."""
    request = kserve.ModelInferRequest(model_name="mnist", outputs=[requested("classes")])
    request.inputs.add(name="images", datatype="UINT8", shape=list(DIGITS.shape))
    request.raw_input_contents.append(DIGITS.tobytes())
    call = channel.unary_unary(
        INFER, request_serializer=None, response_deserializer=kserve.ModelInferResponse.FromString
    )

    def labels() -> list[int]:
        return np.frombuffer(call(request.SerializeToString(), timeout=30).raw_output_contents[0], "<i8").tolist()

    reference = labels()
    assert reference == fake_classes(DIGITS).tolist()

    def check(case: Case) -> None:
        assert labels() == reference

    return check


@pytest.mark.parametrize("case", KSERVE, ids=[case.id for case in KSERVE])
def test_bad_request_is_refused_precisely_and_the_server_goes_on(channel, good, case):
    assert_refused(channel, case)
    good(case)


def test_bad_request_inside_a_kserve_stream_gets_an_error_message_and_the_stream_goes_on(channel, good):
    call = channel.stream_stream(
        "/inference.GRPCInferenceService/ModelStreamInfer",
        request_serializer=None,
        response_deserializer=kserve.ModelStreamInferResponse.FromString,
    )
    requests = [infer("a", None, "").request, infer("b", None, "", raw=[ONE[:5]]).request, infer("c", None, "").request]
    replies = list(call(iter(r.SerializeToString() for r in requests), timeout=30))
    assert [r.infer_response.id for r in replies] == ["a", "b", "c"]
    assert [r.error_message for r in replies][0::2] == ["", ""]
    assert replies[1].error_message.startswith("INVALID_ARGUMENT: input 'images': raw_input_contents has 5 bytes")
    good(Case("stream", INFER, b"", INVALID, ""))
