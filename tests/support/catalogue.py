"""The bad-input catalogue's machinery: one `Case` per malformed request, sent as raw bytes on
the wire, so anything a client library would refuse to build can still be tried.

Each case states the exact status code and a fragment of the message that names the problem;
after it, the same protocol must still answer a good request with the right labels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from PIL import Image

# Big enough for the 78 MB "100,000 images" request: the server must be the one to refuse it.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 200 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


@dataclass(frozen=True)
class Case:
    id: str
    method: str  # full gRPC method, e.g. /mnist_serving.v1.Classifier/Classify
    request: Any  # a protobuf message or raw bytes
    code: grpc.StatusCode
    message: str  # must appear in the status details

    def payload(self) -> bytes:
        return self.request if isinstance(self.request, bytes) else self.request.SerializeToString()


def send(channel: grpc.Channel, case: Case, timeout: float = 30) -> grpc.RpcError | bytes:
    """The response bytes, or the RpcError the call ended with."""
    call = channel.unary_unary(case.method, request_serializer=None, response_deserializer=None)
    try:
        return call(case.payload(), timeout=timeout)
    except grpc.RpcError as error:
        return error


def assert_refused(channel: grpc.Channel, case: Case) -> None:
    outcome = send(channel, case)
    assert isinstance(outcome, grpc.RpcError), f"{case.id}: the server accepted it"
    assert (outcome.code(), case.message in (outcome.details() or "")) == (case.code, True), (
        f"{case.id}: got {outcome.code().name} {outcome.details()!r}, expected {case.code.name} ~ {case.message!r}"
    )


def encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def blank(width: int, height: int, fmt: str, **options) -> bytes:
    """A black image: compresses to almost nothing whatever its size (a decompression bomb)."""
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format=fmt, **options)
    return buffer.getvalue()
