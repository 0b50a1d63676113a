"""Our API through real gRPC against the in-process server and its fake model (tests/support/inprocess.py).

The raw generated stub is used where a test must send requests the client library would never
build (wrong byte counts, both fields, ...); everything else goes through it too, so each status
code is checked exactly as it arrives on the wire. What needs the real model (answers equal to the
export called directly, the export's own files, the runtime a real server picks) is in
tests/integration/test_server_api.py.
"""

from __future__ import annotations

import io
import json

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from mnist_serving.images import decode_image
from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.fake_model import CLASS_NAMES, METADATA, RUNTIME_NAME, fake_classes, fake_outputs
from tests.support.synthetic import synthetic_arrays

SERVICE = "mnist_serving.v1.Classifier"


@pytest.fixture(scope="module")
def stub(channel):
    return classifier_pb2_grpc.ClassifierStub(channel)


def packed(images: np.ndarray, **fields) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        packed=pb.PackedImages(data=images.tobytes(), count=len(images), height=28, width=28), **fields
    )


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def call_error(stub, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        stub.Classify(request, timeout=10)
    return info.value


def test_answers_are_the_models_outputs(stub):
    images, _ = synthetic_arrays(16, seed=11)
    response = stub.Classify(packed(images, request_id="r-1"), timeout=10)
    expected = fake_outputs(images)
    assert (response.model_name, response.model_version, response.request_id) == ("mnist", 1, "r-1")
    assert [p.label for p in response.predictions] == expected["classes"].tolist()
    np.testing.assert_allclose(
        np.array([p.probabilities for p in response.predictions]), expected["probabilities"], atol=1e-7
    )
    assert [p.class_name for p in response.predictions] == [CLASS_NAMES[c] for c in expected["classes"]]
    assert len(set(expected["classes"].tolist())) > 3  # the rule spreads over the classes


def test_pixels_packed_and_encoded_images_in_one_request(stub):
    images, _ = synthetic_arrays(3, seed=12)
    encoded = png(images[2])
    mixed = pb.ClassifyRequest(
        images=[pb.Image(pixels=images[0].tobytes()), pb.Image(encoded=encoded), pb.Image(pixels=images[1].tobytes())]
    )
    response = stub.Classify(mixed, timeout=10)
    reference = stub.Classify(packed(np.stack([images[0], decode_image(encoded), images[1]])), timeout=10)
    assert [p.label for p in response.predictions] == [p.label for p in reference.predictions]
    assert [p.label for p in response.predictions] == fake_classes(
        np.stack([images[0], decode_image(encoded), images[1]])
    ).tolist()
    for prediction in response.predictions:
        assert len(prediction.probabilities) == 10
        assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-4)
        assert prediction.probabilities[prediction.label] == max(prediction.probabilities)


def test_model_info_describes_the_served_version(stub, server):
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert (info.name, info.version, list(info.loaded_versions)) == ("mnist", 1, [1])
    assert (list(info.input_shape), info.input_dtype) == ([-1, 28, 28], "uint8")
    assert list(info.class_names) == list(CLASS_NAMES)
    assert json.loads(info.metadata_json) == METADATA
    assert info.device == "cpu" and info.max_batch_size == 256  # --max-batch-size default
    assert info.runtime == RUNTIME_NAME
    same = stub.GetModelInfo(pb.GetModelInfoRequest(model=pb.ModelSpec(name="mnist", version=1)), timeout=10)
    assert same.version == 1


ONE = bytes(784)
NOISE_PNG = png(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))


@pytest.mark.parametrize(
    "request_, message",
    [
        (pb.ClassifyRequest(), "the request has no images"),
        (
            pb.ClassifyRequest(images=[pb.Image(pixels=ONE), pb.Image(pixels=b"\x00" * 783)]),
            "image 1: pixels has 783 bytes, expected 28*28 = 784",
        ),
        (pb.ClassifyRequest(images=[pb.Image()]), "image 0: has no data"),
        (
            pb.ClassifyRequest(images=[pb.Image(pixels=ONE), pb.Image(encoded=b"not an image at all")]),
            "image 1: not a PNG or JPEG image",
        ),
        (
            pb.ClassifyRequest(images=[pb.Image(encoded=NOISE_PNG[: len(NOISE_PNG) // 2])]),
            "image 0: corrupt or truncated PNG",
        ),
        (
            pb.ClassifyRequest(
                images=[pb.Image(pixels=ONE)], packed=pb.PackedImages(data=ONE, count=1, height=28, width=28)
            ),
            "either `images` or `packed`, not both",
        ),
        (
            pb.ClassifyRequest(packed=pb.PackedImages(data=ONE * 2, count=3, height=28, width=28)),
            "packed.data has 1568 bytes, expected count*height*width = 3*28*28 = 2352",
        ),
        (
            pb.ClassifyRequest(packed=pb.PackedImages(data=bytes(32 * 32), count=1, height=32, width=32)),
            "packed images must be 28x28 (height x width), got 32x32",
        ),
        (
            pb.ClassifyRequest(packed=pb.PackedImages(data=b"", count=0, height=28, width=28)),
            "the request has no images",
        ),
        (
            pb.ClassifyRequest(packed=pb.PackedImages(data=b"", count=5000, height=28, width=28)),
            "the request has 5000 images, the limit is 4096",
        ),
        (
            pb.ClassifyRequest(model=pb.ModelSpec(version=-2), images=[pb.Image(pixels=ONE)]),
            "model.version must be 0 (latest) or positive, got -2",
        ),
    ],
)
def test_invalid_argument_names_the_problem(stub, request_, message):
    error = call_error(stub, request_)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()


def test_not_found_for_unknown_model_or_version(stub):
    error = call_error(stub, pb.ClassifyRequest(model=pb.ModelSpec(name="fashion"), images=[pb.Image(pixels=ONE)]))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == "model 'fashion' is not served; served models: mnist"
    error = call_error(stub, pb.ClassifyRequest(model=pb.ModelSpec(version=7), images=[pb.Image(pixels=ONE)]))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == "version 7 of model 'mnist' is not loaded; loaded versions: 1"
    with pytest.raises(grpc.RpcError) as info:
        stub.GetModelInfo(pb.GetModelInfoRequest(model=pb.ModelSpec(name="nope")), timeout=10)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


def test_stream_answers_in_order_and_survives_a_bad_request(stub):
    images, _ = synthetic_arrays(6, seed=13)
    requests = [packed(images[i : i + 1], request_id=str(i)) for i in range(6)]
    requests[3] = pb.ClassifyRequest(request_id="3", images=[pb.Image(pixels=b"short")])
    responses = list(stub.ClassifyStream(iter(requests), timeout=20))
    assert [r.request_id for r in responses] == [str(i) for i in range(6)]
    assert responses[3].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "image 0: pixels has 5 bytes" in responses[3].error.message
    alone = stub.Classify(packed(images), timeout=10)
    for i in (0, 1, 2, 4, 5):
        assert not responses[i].HasField("error")
        assert responses[i].predictions[0].label == alone.predictions[i].label
        assert responses[i].model_version == 1


def test_health_overall_and_per_service(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    # named, with the services it does know (grpcio-health-checking's own NOT_FOUND says nothing)
    assert info.value.details().startswith("no health status for service 'no.such.Service'; known: '' (the whole")
    assert repr(SERVICE) in info.value.details()


def test_reflection_lists_the_services_and_serves_their_descriptors(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    listed, files = list(stub.ServerReflectionInfo(iter(requests), timeout=5))
    names = {service.name for service in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert files.file_descriptor_response.file_descriptor_proto  # enough for grpcurl


def test_unknown_method_is_unimplemented(channel):
    call = channel.unary_unary(
        "/mnist_serving.v1.Classifier/Nope", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    with pytest.raises(grpc.RpcError) as info:
        call(b"", timeout=5)
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
