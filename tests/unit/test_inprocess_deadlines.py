"""Deadlines that pass while a call waits in the queue, in-process against a fake model held busy by a
gate the test opens: each late call ends DEADLINE_EXCEEDED, the server counts it (as DEADLINE_EXCEEDED,
or CANCELLED when the client's own timer cancelled it a moment before the server's copy of the deadline
passed) and drops it from the queue, and the model never computes it.

Nothing here races the clock: the late calls are sent only while the model is held, the test waits
until the server has queued every one of them (a deadline of seconds leaves the server ample time to
read them on a loaded machine), and opens the gate only after every deadline has passed.
tests/integration/test_overload.py checks the same through a real process and TensorFlow; there a busy
machine may let a deadline pass before the server has even read the call (gRPC then ends it unseen),
so only this test can insist that the server counted every one.
"""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np

from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.fake_model import fake_classes, fake_loader
from tests.support.inprocess import InProcessServer
from tests.support.server_process import metric, scrape_metrics, wait_for_queue_depth
from tests.support.synthetic import synthetic_arrays

BACKLOG_IMAGES = 4  # one computing behind the closed gate, three queued
LATE_CALLERS = 10
DEADLINE_S = 2.0
# One batch at a time of one image each, so the queue depth says exactly which calls the server holds.
FLAGS = ["--max-batch-size", "1", "--max-concurrent-batches", "1", "--batch-timeout-ms", "0"]


def packed(images: np.ndarray) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(packed=pb.PackedImages(data=images.tobytes(), count=len(images), height=28, width=28))


def test_calls_whose_deadline_passes_in_the_queue_are_counted_dropped_and_never_computed():
    images, _ = synthetic_arrays(BACKLOG_IMAGES + LATE_CALLERS + 1, seed=61)
    warm, backlog, late_images = images[:1], images[1 : BACKLOG_IMAGES + 1], images[BACKLOG_IMAGES + 1 :]
    gate = threading.Event()
    gate.set()
    with InProcessServer(FLAGS, loader=fake_loader(gate=gate)) as server:
        try:
            with grpc.insecure_channel(server.target) as channel:
                stub = classifier_pb2_grpc.ClassifierStub(channel)
                stub.Classify(packed(warm), timeout=10)  # connected: the deadlines below go to queueing
                before = scrape_metrics(server.http_url)
                gate.clear()
                queued = stub.Classify.future(packed(backlog), timeout=30)
                queued_now = wait_for_queue_depth(server.http_url, BACKLOG_IMAGES - 1, "the backlog never queued")
                assert queued_now == BACKLOG_IMAGES - 1
                late = [stub.Classify.future(packed(image[None]), timeout=DEADLINE_S) for image in late_images]
                queued_now = wait_for_queue_depth(
                    server.http_url, BACKLOG_IMAGES - 1 + LATE_CALLERS, "the late calls never queued"
                )
                assert queued_now == BACKLOG_IMAGES - 1 + LATE_CALLERS
                codes = [future.exception().code() for future in late]  # every deadline has passed
                gate.set()
                assert [p.label for p in queued.result().predictions] == fake_classes(backlog).tolist()
        finally:
            gate.set()
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
