"""Property-based tests (hypothesis) against the real server: whatever a caller sends, on any of
the three protocols, the answer is never INTERNAL or UNKNOWN, and the server stays up and right.

Requests are generated at three levels: random bytes, mutations of valid request bytes, and
structured messages with random field values (sizes, shapes, dtypes, names, image files).
`derandomize=True` keeps CI repeatable; set HYPOTHESIS_EXPLORE=1 for fresh random examples.
"""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2
from tritonclient.grpc import service_pb2 as kserve

from mnist_serving.v1 import classifier_pb2 as pb
from tests.support.catalogue import CHANNEL_OPTIONS, encode
from tests.support.synthetic import synthetic_arrays

EXPLORE = os.environ.get("HYPOTHESIS_EXPLORE") == "1"
PROPERTY = settings(
    max_examples=1000 if EXPLORE else 300,
    deadline=None,
    derandomize=not EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
CLASSIFY = "/mnist_serving.v1.Classifier/Classify"
PREDICT = "/tensorflow.serving.PredictionService/Predict"
INFER = "/inference.GRPCInferenceService/ModelInfer"
UNARY_METHODS = [
    CLASSIFY,
    "/mnist_serving.v1.Classifier/GetModelInfo",
    PREDICT,
    "/tensorflow.serving.PredictionService/Classify",
    "/tensorflow.serving.PredictionService/GetModelMetadata",
    "/tensorflow.serving.ModelService/GetModelStatus",
    INFER,
    "/inference.GRPCInferenceService/ModelMetadata",
    "/inference.GRPCInferenceService/ModelConfig",
    "/inference.GRPCInferenceService/ModelStatistics",
    "/inference.GRPCInferenceService/ModelReady",
]

DIGITS, _ = synthetic_arrays(4, seed=47)
VALID_FILES = [encode(DIGITS[0], "PNG"), encode(DIGITS[1], "JPEG")]
VALID_REQUESTS = {
    CLASSIFY: pb.ClassifyRequest(
        images=[pb.Image(pixels=DIGITS[2].tobytes()), pb.Image(encoded=VALID_FILES[0])],
        model=pb.ModelSpec(name="mnist", version=1),
        request_id="r",
    ).SerializeToString(),
}


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.target, options=CHANNEL_OPTIONS) as chan:
        yield chan


@pytest.fixture(scope="module")
def answer(channel, server):
    """Sends raw bytes to a method; fails the test on INTERNAL/UNKNOWN or a dead server."""

    def call(method: str, payload: bytes) -> grpc.StatusCode:
        try:
            channel.unary_unary(method, request_serializer=None, response_deserializer=None)(payload, timeout=30)
        except grpc.RpcError as error:
            assert error.code() not in NEVER, f"{method} answered {error.code().name}: {error.details()}"
            assert server.proc.poll() is None, f"the server died:\n{server.log_text()[-4000:]}"
            return error.code()
        return grpc.StatusCode.OK

    return call


@pytest.fixture(scope="module", autouse=True)
def still_right_afterwards(channel, server):
    """After all the random traffic: alive, and the same answer to the same good request."""
    good = channel.unary_unary(CLASSIFY, request_serializer=None, response_deserializer=pb.ClassifyResponse.FromString)
    before = [p.label for p in good(VALID_REQUESTS[CLASSIFY], timeout=30).predictions]
    yield
    assert server.proc.poll() is None
    assert [p.label for p in good(VALID_REQUESTS[CLASSIFY], timeout=30).predictions] == before
    assert "unexpected error while handling a request" not in server.log_text()


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buffer = bytearray(data[: max(1, len(data) - cut)])
    for position, value in edits:
        buffer[position % len(buffer)] = value
    return bytes(buffer)


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8)


@PROPERTY
@given(method=st.sampled_from(UNARY_METHODS), payload=st.binary(max_size=2048))
def test_random_bytes_to_any_method(answer, method, payload):
    answer(method, payload)


@PROPERTY
@given(
    edits=EDITS,
    cut=st.integers(0, 64),
    file=st.sampled_from(VALID_FILES),
    file_edits=EDITS,
    file_cut=st.integers(0, 200),
)
def test_mutated_requests_and_image_files(answer, edits, cut, file, file_edits, file_cut):
    answer(CLASSIFY, mutate(VALID_REQUESTS[CLASSIFY], edits, cut))
    damaged = mutate(file, file_edits, file_cut)
    answer(CLASSIFY, pb.ClassifyRequest(images=[pb.Image(encoded=damaged)]).SerializeToString())


IMAGE = st.one_of(
    st.builds(lambda n: pb.Image(pixels=bytes(n)), st.sampled_from([0, 1, 783, 784, 785, 1568])),
    st.builds(lambda data: pb.Image(encoded=data), st.binary(max_size=256)),
    st.builds(lambda i: pb.Image(encoded=VALID_FILES[i]), st.integers(0, 1)),
    st.just(pb.Image()),
)
DIMENSION = st.one_of(st.integers(-3, 40), st.sampled_from([784, 4096, 4097, 2**31 - 1, 2**32 - 1]))
MODEL = st.builds(
    pb.ModelSpec,
    name=st.sampled_from(["", "mnist", "MNIST", "mnist ", "../mnist", "\u00e9"]),
    version=st.sampled_from([0, 1, 2, -1, 2**63 - 1, -(2**63)]),
)


@PROPERTY
@given(
    images=st.lists(IMAGE, max_size=6),
    packed=st.none() | st.tuples(DIMENSION, DIMENSION, DIMENSION, st.integers(0, 3000)),
    model=MODEL,
)
def test_structured_classify_requests(answer, images, packed, model):
    request = pb.ClassifyRequest(images=images, model=model)
    if packed is not None:
        count, height, width, length = packed
        request.packed.CopyFrom(
            pb.PackedImages(data=bytes(length), count=max(count, 0), height=max(height, 0), width=max(width, 0))
        )
    code = answer(CLASSIFY, request.SerializeToString())
    if code is grpc.StatusCode.OK:  # only a well-formed request may be answered
        assert model.name in ("", "mnist") and model.version in (0, 1)


SHAPE = st.lists(st.one_of(st.integers(-2, 30), st.sampled_from([784, 100_000, 2**32, 2**40])), max_size=5)


@PROPERTY
@given(
    dtype=st.sampled_from(sorted(types_pb2.DataType.values())),
    shape=SHAPE,
    content=st.none() | st.binary(max_size=4096),
    int_values=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=20),
    float_values=st.lists(st.floats(width=32), max_size=20),
    unknown_rank=st.booleans(),
    input_name=st.sampled_from(["images", "image", ""]),
)
def test_structured_tf_serving_predict_requests(
    answer, dtype, shape, content, int_values, float_values, unknown_rank, input_name
):
    proto = tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in shape], unknown_rank=unknown_rank
        ),
    )
    if content is not None:
        proto.tensor_content = content
    proto.int_val.extend(int_values)
    proto.float_val.extend(float_values)
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="mnist"))
    request.inputs[input_name].CopyFrom(proto)
    answer(PREDICT, request.SerializeToString())


@PROPERTY
@given(
    datatype=st.sampled_from(["UINT8", "FP32", "FP64", "INT64", "BYTES", "BOOL", "FP16", "", "uint8"]),
    shape=SHAPE,
    raw=st.none() | st.lists(st.binary(max_size=4096), max_size=2),
    uints=st.lists(st.integers(0, 2**32 - 1), max_size=20),
    floats=st.lists(st.floats(width=32), max_size=20),
    version=st.sampled_from(["", "1", "0", "-1", "x", "1e3"]),
)
def test_structured_kserve_infer_requests(answer, datatype, shape, raw, uints, floats, version):
    request = kserve.ModelInferRequest(model_name="mnist", model_version=version)
    tensor = request.inputs.add(name="images", datatype=datatype, shape=shape)
    tensor.contents.uint_contents.extend(uints)
    tensor.contents.fp32_contents.extend(floats)
    if raw is not None:
        request.raw_input_contents.extend(raw)
    answer(INFER, request.SerializeToString())


@PROPERTY
@given(pixels=st.binary(min_size=784 * 3, max_size=784 * 3))
def test_any_pixels_get_a_probability_distribution(channel, pixels):
    """The other side of 'never INTERNAL': every uint8 image is valid input and gets a real answer."""
    call = channel.unary_unary(CLASSIFY, request_serializer=None, response_deserializer=pb.ClassifyResponse.FromString)
    request = pb.ClassifyRequest(packed=pb.PackedImages(data=pixels, count=3, height=28, width=28))
    for prediction in call(request.SerializeToString(), timeout=30).predictions:
        probabilities = np.array(prediction.probabilities)
        assert np.all(probabilities >= 0) and abs(probabilities.sum() - 1) < 1e-4
        assert prediction.label == int(np.argmax(probabilities))
