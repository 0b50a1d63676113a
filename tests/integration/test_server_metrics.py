"""/metrics, /healthz and /readyz over HTTP; counters move by exactly what was sent (shared server)."""

from __future__ import annotations

import grpc
import pytest

from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.server_process import http_get, metric, scrape_metrics
from tests.support.synthetic import synthetic_arrays

CLASSIFY = "mnist_serving.v1.Classifier/Classify"


def delta(before, after, name, **labels):
    return metric(after, name, **labels) - metric(before, name, **labels)


def test_counters_move_by_the_right_amounts(server):
    images, _ = synthetic_arrays(15, seed=31)
    before = scrape_metrics(server.http_url)
    with grpc.insecure_channel(server.target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        for i in range(5):
            chunk = images[3 * i : 3 * i + 3]
            stub.Classify(
                pb.ClassifyRequest(packed=pb.PackedImages(data=chunk.tobytes(), count=3, height=28, width=28)),
                timeout=10,
            )
        for bad in (
            pb.ClassifyRequest(),
            pb.ClassifyRequest(model=pb.ModelSpec(name="other"), images=[pb.Image(pixels=bytes(784))]),
        ):
            with pytest.raises(grpc.RpcError):
                stub.Classify(bad, timeout=10)
    after = scrape_metrics(server.http_url)
    assert delta(before, after, "mnist_serving_requests_total", method=CLASSIFY, model="mnist", code="OK") == 5
    assert (
        delta(before, after, "mnist_serving_requests_total", method=CLASSIFY, model="mnist", code="INVALID_ARGUMENT")
        == 1
    )
    assert delta(before, after, "mnist_serving_requests_total", method=CLASSIFY, model="none", code="NOT_FOUND") == 1
    assert delta(before, after, "mnist_serving_request_latency_seconds_count", method=CLASSIFY) == 7
    assert delta(before, after, "mnist_serving_request_latency_seconds_sum", method=CLASSIFY) > 0
    assert delta(before, after, "mnist_serving_images_total", model="mnist") == 15
    assert delta(before, after, "mnist_serving_batch_size_sum", model="mnist") == 15
    assert delta(before, after, "mnist_serving_queue_wait_seconds_count", model="mnist") == 5
    batches = delta(before, after, "mnist_serving_batch_size_count", model="mnist")
    assert delta(before, after, "mnist_serving_compute_seconds_count", model="mnist") == batches == 5
    assert metric(after, "mnist_serving_queue_depth", model="mnist") == 0
    assert metric(after, "mnist_serving_inflight_requests") == 0
    assert metric(after, "mnist_serving_model_version", model="mnist", device="cpu") == 1
    assert metric(after, "mnist_serving_model_loads_total", model="mnist", outcome="success") == 1
    assert metric(after, "mnist_serving_model_loads_total", model="mnist", outcome="failure") == 0
    assert metric(after, "mnist_serving_model_load_seconds_count", model="mnist") == 1
    assert metric(after, "process_resident_memory_bytes") > 0


def test_every_metric_has_the_prefix_and_a_help_text(server):
    status, text = http_get(server.http_url + "/metrics")
    assert status == 200
    ours = [line for line in text.splitlines() if line.startswith("# HELP mnist_serving_")]
    names = {line.split()[2] for line in ours}
    assert {
        "mnist_serving_requests_total",
        "mnist_serving_request_latency_seconds",
        "mnist_serving_images_total",
        "mnist_serving_queue_wait_seconds",
        "mnist_serving_batch_size",
        "mnist_serving_compute_seconds",
        "mnist_serving_queue_depth",
        "mnist_serving_inflight_requests",
        "mnist_serving_model_version",
        "mnist_serving_model_loads_total",
        "mnist_serving_model_load_seconds",
        "mnist_serving_requests_dropped_total",
    } <= names


def test_health_endpoints(server):
    assert http_get(server.http_url + "/healthz") == (200, "ok\n")
    assert http_get(server.http_url + "/readyz") == (200, "ready\n")
    assert http_get(server.http_url + "/nothing")[0] == 404
