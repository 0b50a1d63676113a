"""The bad-input catalogue, part 1: our API (mnist_serving.v1.Classifier) and the wire itself.

Every case: the exact status code, a message naming the problem, then a good request on the same
server answered with the right labels. Parts 2 and 3 (TF Serving, KServe v2) are
test_inprocess_bad_input_grpc_tfserving.py and test_inprocess_bad_input_grpc_kserve.py. In-process,
against the fake model (tests/support/inprocess.py): the right labels are the fake's rule (fake_classes).
"""

from __future__ import annotations

import socket
import struct
import zlib

import grpc
import numpy as np
import pytest

from mnist_serving.images import decode_image
from mnist_serving.v1 import classifier_pb2 as pb
from tests.support.catalogue import Case, assert_refused, blank, encode
from tests.support.fake_model import fake_classes
from tests.support.synthetic import synthetic_arrays

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
TOO_BIG = grpc.StatusCode.RESOURCE_EXHAUSTED
CLASSIFY = "/mnist_serving.v1.Classifier/Classify"
MODEL_INFO = "/mnist_serving.v1.Classifier/GetModelInfo"

DIGITS, _ = synthetic_arrays(8, seed=41)
ONE = DIGITS[0].tobytes()
PNG = encode(DIGITS[1], "PNG")
JPEG = encode(DIGITS[2], "JPEG")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height in its header and holds no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def images(*items: pb.Image, **fields) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(images=list(items), **fields)


def packed(data: bytes, count: int, height: int = 28, width: int = 28, **fields) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(packed=pb.PackedImages(data=data, count=count, height=height, width=width), **fields)


def pixels(data: bytes) -> pb.Image:
    return pb.Image(pixels=data)


def encoded(data: bytes) -> pb.Image:
    return pb.Image(encoded=data)


def classify(case_id: str, request, code: grpc.StatusCode, message: str) -> Case:
    return Case(case_id, CLASSIFY, request, code, message)


CASES = [
    # --- shapes and byte counts
    classify("no-images", pb.ClassifyRequest(), INVALID, "the request has no images"),
    classify(
        "pixels-783-bytes",
        images(pixels(ONE), pixels(ONE[:-1])),
        INVALID,
        "image 1: pixels has 783 bytes, expected 28*28 = 784",
    ),
    classify("pixels-785-bytes", images(pixels(ONE + b"\x00")), INVALID, "image 0: pixels has 785 bytes"),
    classify("pixels-empty", images(pixels(b"")), INVALID, "image 0: pixels has 0 bytes"),
    classify("pixels-28x28x3", images(pixels(ONE * 3)), INVALID, "image 0: pixels has 2352 bytes"),
    classify(
        "pixels-float32",
        images(pixels(DIGITS[0].astype(np.float32).tobytes())),
        INVALID,
        "image 0: pixels has 3136 bytes, expected 28*28 = 784 (uint8 grayscale",
    ),
    classify("image-without-data", images(pixels(ONE), pb.Image()), INVALID, "image 1: has no data"),
    classify(
        "images-and-packed",
        images(pixels(ONE), packed=pb.PackedImages(data=ONE, count=1, height=28, width=28)),
        INVALID,
        "give either `images` or `packed`, not both",
    ),
    classify(
        "packed-short-data",
        packed(ONE * 2, 3),
        INVALID,
        "packed.data has 1568 bytes, expected count*height*width = 3*28*28 = 2352",
    ),
    classify("packed-long-data", packed(ONE * 2 + b"\x00", 2), INVALID, "packed.data has 1569 bytes"),
    classify(
        "packed-32x32",
        packed(bytes(32 * 32), 1, 32, 32),
        INVALID,
        "packed images must be 28x28 (height x width), got 32x32",
    ),
    classify(
        "packed-784x1", packed(ONE, 1, 784, 1), INVALID, "packed images must be 28x28 (height x width), got 784x1"
    ),
    classify("packed-zero-dimensions", packed(b"", 1, 0, 0), INVALID, "got 0x0"),
    classify("packed-count-0", packed(b"", 0), INVALID, "the request has no images"),
    classify(
        "packed-count-uint32-max",
        packed(ONE, 2**32 - 1),
        INVALID,
        "the request has 4294967295 images, the limit is 4096 per request",
    ),
    classify(
        "packed-100000-images-claimed",
        packed(ONE, 100_000),
        INVALID,
        "the request has 100000 images, the limit is 4096 per request (--max-images-per-request)",
    ),
    classify(
        "100000-image-messages",
        images(*[pixels(b"")] * 100_000),
        INVALID,
        "the request has 100000 images, the limit is 4096",
    ),
    classify(
        "100000-real-images",
        packed(bytes(100_000 * 784), 100_000),
        TOO_BIG,
        "Received message larger than max (78400018 vs. 16777216)",
    ),
    classify("one-17MiB-image", images(pixels(bytes(17 * 1024 * 1024))), TOO_BIG, "Received message larger than max"),
    # --- encoded images
    classify("encoded-empty", images(encoded(b"")), INVALID, "image 0: encoded image is empty"),
    classify(
        "encoded-not-an-image",
        images(pixels(ONE), encoded(b"GIF? no, plain text")),
        INVALID,
        "image 1: not a PNG or JPEG image",
    ),
    classify("encoded-png-magic-only", images(encoded(PNG[:8])), INVALID, "image 0: not a PNG or JPEG image"),
    classify(
        "encoded-png-truncated",
        images(encoded(PNG[: len(PNG) * 2 // 3])),
        INVALID,
        "image 0: corrupt or truncated PNG image",
    ),
    classify(
        "encoded-png-no-pixel-data",
        images(encoded(png_header_only(28, 28))),
        INVALID,
        "image 0: corrupt or truncated PNG image",
    ),
    classify(
        "encoded-jpeg-truncated-header",
        images(encoded(JPEG[: len(JPEG) // 2])),
        INVALID,
        "image 0: corrupt or truncated image header",
    ),
    classify(
        "encoded-gif",
        images(encoded(encode(DIGITS[3], "GIF"))),
        INVALID,
        "image 0: unsupported image format GIF; send PNG or JPEG",
    ),
    classify("encoded-bmp", images(encoded(encode(DIGITS[3], "BMP"))), INVALID, "unsupported image format BMP"),
    classify("encoded-webp", images(encoded(encode(DIGITS[3], "WEBP"))), INVALID, "unsupported image format WEBP"),
    classify(
        "png-bomb-5000x5000",
        images(encoded(blank(5000, 5000, "PNG"))),
        INVALID,
        "image 0: image is 5000x5000 = 25000000 pixels, limit is 16777216",
    ),
    # each under the per-image limit, together over the per-request one: refused from the headers alone
    # (the PNGs hold no pixel data, so any attempt to decode one would give another message)
    classify(
        "five-4000x4000-pngs",
        images(*[encoded(png_header_only(4000, 4000))] * 5),
        INVALID,
        "the encoded images up to image 4 decode to 80000000 pixels, more than the limit of 67108864 "
        "per request (--max-decoded-pixels-per-request)",
    ),
    classify(
        "png-header-9000x9000",
        images(encoded(png_header_only(9000, 9000))),
        INVALID,
        "image 0: image is 9000x9000 = 81000000 pixels, limit is 16777216",
    ),
    classify(
        "jpeg-bomb-5000x4000",
        images(encoded(blank(5000, 4000, "JPEG", quality=5))),
        INVALID,
        "image 0: image is 5000x4000 = 20000000 pixels, limit is 16777216",
    ),
    classify(
        "png-header-2^31x2^31",
        images(encoded(png_header_only(2**31 - 1, 2**31 - 1))),
        INVALID,
        "image 0: image dimensions are too large to decode",
    ),
    classify(
        "encoded-over-4MiB",
        images(encoded(PNG[:16] + bytes(5 * 1024 * 1024))),
        INVALID,
        "image 0: encoded image is 5242896 bytes, limit is 4194304",
    ),
    classify("bad-image-among-good", images(encoded(PNG), pixels(ONE), encoded(JPEG[:40])), INVALID, "image 2: "),
    # --- model and version
    classify(
        "unknown-model",
        images(pixels(ONE), model=pb.ModelSpec(name="fashion")),
        NOT_FOUND,
        "model 'fashion' is not served; served models: mnist",
    ),
    classify(
        "unknown-version",
        images(pixels(ONE), model=pb.ModelSpec(version=7)),
        NOT_FOUND,
        "version 7 of model 'mnist' is not loaded; loaded versions: 1",
    ),
    classify(
        "negative-version",
        images(pixels(ONE), model=pb.ModelSpec(version=-1)),
        INVALID,
        "model.version must be 0 (latest) or positive, got -1",
    ),
    classify(
        "huge-version",
        images(pixels(ONE), model=pb.ModelSpec(version=2**63 - 1)),
        NOT_FOUND,
        "version 9223372036854775807 of model 'mnist' is not loaded",
    ),
    classify(
        "model-name-10k-chars",
        images(pixels(ONE), model=pb.ModelSpec(name="m" * 10_000)),
        NOT_FOUND,
        "chars cut]...mmmm",
    ),
    classify(
        "model-name-5k-emoji",
        images(pixels(ONE), model=pb.ModelSpec(name="\U0001f600" * 5_000)),
        NOT_FOUND,
        "is not served; served models: mnist",
    ),
    Case(
        "model-info-unknown-model",
        MODEL_INFO,
        pb.GetModelInfoRequest(model=pb.ModelSpec(name="nope")),
        NOT_FOUND,
        "model 'nope' is not served",
    ),
    Case(
        "model-info-negative-version",
        MODEL_INFO,
        pb.GetModelInfoRequest(model=pb.ModelSpec(version=-3)),
        INVALID,
        "model version must be a positive integer, got -3",
    ),
    # --- bytes that are no ClassifyRequest at all
    classify(
        "garbage-bytes",
        b"\xff\xfe\xfd garbage \x00\x01",
        INVALID,
        "the request bytes are not a valid mnist_serving.v1.ClassifyRequest",
    ),
    classify(
        "truncated-message",
        packed(ONE, 1).SerializeToString()[:100],
        INVALID,
        "not a valid mnist_serving.v1.ClassifyRequest",
    ),
    classify(
        "invalid-utf8-in-model-name",
        b"\x0a\x04\x0a\x02\xff\xfe",
        INVALID,
        "not a valid mnist_serving.v1.ClassifyRequest",
    ),
    classify(
        "wrong-wire-type", b"\x12\x05\x08\x01\x10\x01\x18", INVALID, "not a valid mnist_serving.v1.ClassifyRequest"
    ),
    Case(
        "model-info-garbage",
        MODEL_INFO,
        b"\x0a\xff\xff\xff\xff\x0f",
        INVALID,
        "not a valid mnist_serving.v1.GetModelInfoRequest",
    ),
    Case("unknown-method", "/mnist_serving.v1.Classifier/Train", b"", grpc.StatusCode.UNIMPLEMENTED, ""),
    Case("unknown-service", "/mnist_serving.v2.Classifier/Classify", b"", grpc.StatusCode.UNIMPLEMENTED, ""),
]


@pytest.fixture(scope="module")
def good(channel):
    """Sends a good request and checks its answer against the first one (taken before any bad input)."""
    call = channel.unary_unary(
        CLASSIFY,
        request_serializer=pb.ClassifyRequest.SerializeToString,
        response_deserializer=pb.ClassifyResponse.FromString,
    )
    request = images(encoded(PNG), *map(pixels, (d.tobytes() for d in DIGITS)))
    reference = [p.label for p in call(request, timeout=30).predictions]
    assert reference == fake_classes(np.stack([decode_image(PNG), *DIGITS])).tolist()

    def check() -> None:
        assert [p.label for p in call(request, timeout=30).predictions] == reference

    return check


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_request_is_refused_precisely_and_the_server_goes_on(channel, good, case):
    assert_refused(channel, case)
    good()


def test_bad_request_inside_a_stream_gets_its_own_error_and_the_stream_goes_on(channel, good):
    call = channel.stream_stream(
        "/mnist_serving.v1.Classifier/ClassifyStream",
        request_serializer=None,
        response_deserializer=pb.ClassifyResponse.FromString,
    )
    sent = [
        packed(ONE, 1, request_id="a"),
        packed(ONE, 2, request_id="b"),
        images(encoded(b"nope"), request_id="c"),
        packed(ONE, 1, request_id="d"),
    ]
    replies = list(call(iter(m.SerializeToString() for m in sent), timeout=30))
    assert [r.request_id for r in replies] == ["a", "b", "c", "d"]
    assert [r.error.code for r in replies] == [0, INVALID.value[0], INVALID.value[0], 0]
    assert "packed.data has 784 bytes" in replies[1].error.message
    assert "image 0: not a PNG or JPEG image" in replies[2].error.message
    garbage = call(iter([packed(ONE, 1).SerializeToString(), b"\xff\xff\xff"]), timeout=30)
    with pytest.raises(grpc.RpcError) as info:
        list(garbage)
    assert info.value.code() is INVALID and "not a valid mnist_serving.v1.ClassifyRequest" in info.value.details()
    good()


@pytest.mark.parametrize(
    "junk",
    [
        b"\x00" * 64,  # not the HTTP/2 preface
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # HTTP/1.1 to the gRPC port
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 200,  # the preface, then frames of garbage
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,  # a TLS ClientHello to a plaintext port
    ],
    ids=["zeros", "http1", "h2-garbage-frames", "tls-hello"],
)
def test_garbage_on_the_socket_is_dropped_and_the_server_goes_on(server, good, junk):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(junk)
        sock.settimeout(10)
        received = b""
        try:
            while chunk := sock.recv(65536):  # the server closes the connection
                received += chunk
        except ConnectionResetError:
            pass
    assert len(received) < 4096  # at most its SETTINGS and a GOAWAY, never a response
    good()
