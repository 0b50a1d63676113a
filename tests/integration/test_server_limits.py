"""Overload and deadlines on a private server whose model takes one image per call at 2 ms (the fake
model, tests/support/fake_model_server.py, in a real server process), so a big request keeps the queue
full long enough to observe (no timing assertions: only codes and counts).
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.fake_model import write_fake_versions
from tests.support.server_process import ServerProcess, metric, scrape_metrics, wait_for_queue_depth

QUEUE = 1024
BIG = 1000
SLOW_MODEL_MS = 2


def packed(count: int) -> pb.ClassifyRequest:
    images = np.random.default_rng(count).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    return pb.ClassifyRequest(packed=pb.PackedImages(data=images.tobytes(), count=count, height=28, width=28))


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """The fake model at 2 ms a call in a real server process: the big request's 1,000 images keep the
    queue full for 2 s whatever the machine (TensorFlow's ~0.5-1 ms a call left a late call's 0.5 s
    deadline racing the backlog; CI once saw the backlog win)."""
    base = write_fake_versions(tmp_path_factory.mktemp("limits") / "mnist")
    flags = [
        "--compute-ms",
        str(SLOW_MODEL_MS),
        "--model-dir",
        str(base),
        "--max-batch-size",
        "1",
        "--max-queue-images",
        str(QUEUE),
        "--max-images-per-request",
        str(BIG),
    ]
    with ServerProcess(flags, module="tests.support.fake_model_server") as server:
        yield server


def test_full_queue_answers_resource_exhausted_and_short_deadlines_are_dropped(slow_server):
    before = scrape_metrics(slow_server.http_url)
    with grpc.insecure_channel(slow_server.target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        big = stub.Classify.future(packed(BIG), timeout=120)
        wait_for_queue_depth(slow_server.http_url, BIG - 100, "the big request never queued", timeout_s=20)

        with pytest.raises(grpc.RpcError) as refused:
            stub.Classify(packed(200), timeout=20)  # does not fit next to the big one
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "server overloaded" in refused.value.details()
        assert f"limit of {QUEUE}" in refused.value.details()

        with pytest.raises(grpc.RpcError) as late:
            # queued behind hundreds of 2 ms model calls: half a second lets a loaded machine read the
            # call before its deadline passes (gRPC ends an unread call without the server)
            stub.Classify(packed(1), timeout=0.5)
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

        assert len(big.result().predictions) == BIG  # the accepted request is answered in full
        after = scrape_metrics(slow_server.http_url)
        answered = stub.Classify(packed(3), timeout=20)  # and the server recovers at once
        assert len(answered.predictions) == 3

    def grew(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("mnist_serving_requests_dropped_total", model="mnist", reason="queue_full") == 1
    # The late call is recorded as DEADLINE_EXCEEDED, or as CANCELLED when the client's timer (started
    # a moment before the server's copy of the deadline) cancelled it first.
    expired = ("deadline", "cancelled")
    assert sum(grew("mnist_serving_requests_dropped_total", model="mnist", reason=r) for r in expired) == 1
    classify = "mnist_serving.v1.Classifier/Classify"
    assert grew("mnist_serving_requests_total", method=classify, code="RESOURCE_EXHAUSTED") == 1
    expired_codes = ("DEADLINE_EXCEEDED", "CANCELLED")
    assert sum(grew("mnist_serving_requests_total", method=classify, code=c) for c in expired_codes) == 1
    # no compute was spent on the dropped one: exactly the big request's images were classified
    assert grew("mnist_serving_images_total", model="mnist") == BIG


def test_too_many_images_in_one_request(slow_server):
    with grpc.insecure_channel(slow_server.target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Classify(packed(BIG + 1), timeout=20)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"the request has {BIG + 1} images, the limit is {BIG} per request" in info.value.details()
