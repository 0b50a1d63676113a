"""Deadlines shorter than the queue wait, in-process against a fake model slow on purpose (10 ms a call,
one image a batch), so that the backlog outlasts the callers' deadlines by a second: each late call ends
DEADLINE_EXCEEDED, the server counts it (as DEADLINE_EXCEEDED, or CANCELLED when the client's own timer
cancelled it a moment before the server's copy of the deadline passed) and drops it from the queue, and
the model never computes it.

tests/integration/test_overload.py checks the same through a real process and TensorFlow; there a
busy machine may let a deadline pass before the server has even read the call (gRPC then ends it
unseen), so only this test can insist that the server counted every one.
"""

from __future__ import annotations

import time

import grpc
import numpy as np

from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.fake_model import fake_classes, fake_loader
from tests.support.inprocess import InProcessServer
from tests.support.server_process import metric, scrape_metrics
from tests.support.synthetic import synthetic_arrays

COMPUTE_S = 0.01  # per model call, one image each: the backlog below costs >= 1.28 s
BACKLOG_IMAGES = 128
LATE_CALLERS = 10
DEADLINE_S = 0.3
FLAGS = ["--max-batch-size", "1", "--max-queue-images", "512", "--max-images-per-request", "256"]


def packed(images: np.ndarray) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(packed=pb.PackedImages(data=images.tobytes(), count=len(images), height=28, width=28))


def test_calls_whose_deadline_passes_in_the_queue_are_counted_dropped_and_never_computed():
    images, _ = synthetic_arrays(BACKLOG_IMAGES + LATE_CALLERS, seed=61)
    backlog, late_images = images[:BACKLOG_IMAGES], images[BACKLOG_IMAGES:]
    with InProcessServer(FLAGS, loader=fake_loader(compute_s=COMPUTE_S)) as server:
        with grpc.insecure_channel(server.target) as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            stub.Classify(packed(backlog[:1]), timeout=10)  # connected: the deadlines below go to queueing
            before = scrape_metrics(server.http_url)
            queued = stub.Classify.future(packed(backlog), timeout=30)
            bound = time.monotonic() + 10
            while metric(scrape_metrics(server.http_url), "mnist_serving_queue_depth") < BACKLOG_IMAGES - 10:
                assert time.monotonic() < bound, "the backlog never queued"
                time.sleep(0.002)
            late = [stub.Classify.future(packed(late_images[i : i + 1]), timeout=DEADLINE_S) for i in range(10)]
            codes = [future.exception().code() for future in late]
            assert [p.label for p in queued.result().predictions] == fake_classes(backlog).tolist()
        assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * LATE_CALLERS

        # The server counts a call's status when its handler ends, a moment after the client's timer.
        bound = time.monotonic() + 5
        while True:
            after = scrape_metrics(server.http_url)

            def delta(name, **labels):
                return metric(after, name, **labels) - metric(before, name, **labels)  # noqa: B023 - this pass

            # DEADLINE_EXCEEDED when the server's copy of the deadline had passed; CANCELLED when the
            # client's timer, started a moment earlier, cancelled the call first (CI saw 6 of 10 so).
            expired = sum(
                delta("mnist_serving_requests_total", method="mnist_serving.v1.Classifier/Classify", code=code)
                for code in ("DEADLINE_EXCEEDED", "CANCELLED")
            )
            dropped = delta("mnist_serving_requests_dropped_total", reason="cancelled") + delta(
                "mnist_serving_requests_dropped_total", reason="deadline"
            )
            if (expired, dropped) == (LATE_CALLERS, LATE_CALLERS) or time.monotonic() > bound:
                break
            time.sleep(0.02)
        assert (expired, dropped) == (LATE_CALLERS, LATE_CALLERS)
        assert delta("mnist_serving_images_total", model="mnist") == BACKLOG_IMAGES  # not one late image
        assert delta("mnist_serving_batch_size_count", model="mnist") == BACKLOG_IMAGES
