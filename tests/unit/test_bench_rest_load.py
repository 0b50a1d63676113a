"""The bench's HTTP load generator (benchmarks/rest_load.py): the bodies it builds are what the
server's routes take, it sends to loopback only, and its closed loop counts answers by status
(against a small aiohttp server on 127.0.0.1, not ours: no model needed)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter

import numpy as np
import pytest
from aiohttp import web
from google.protobuf import json_format

from benchmarks import rest_load
from benchmarks.loadgen import check_loopback, closed_loop_result
from mnist_serving.v1 import classifier_pb2


def test_instances_body_is_tf_serving_row_format_of_integer_pixels():
    images = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28).astype(np.uint8)
    body = json.loads(rest_load.instances_body(images))
    assert list(body) == ["instances"]
    assert np.array_equal(np.array(body["instances"]), images)
    assert all(isinstance(v, int) for v in body["instances"][1][27])


def test_classify_body_is_a_classify_request_with_packed_pixels():
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    body = rest_load.classify_body(images, "mnist")
    message = json_format.Parse(body, classifier_pb2.ClassifyRequest())  # what the server parses it with
    assert message.model.name == "mnist"
    assert (message.packed.count, message.packed.height, message.packed.width) == (3, 28, 28)
    assert message.packed.data == images.tobytes()
    assert json.loads(body)["packed"]["data"] == base64.b64encode(images.tobytes()).decode()


@pytest.mark.parametrize("api", [rest_load.TFSERVING_INSTANCES, rest_load.CLASSIFY_JSON])
def test_bodies_are_built_once_distinct_and_of_the_requested_batch(api):
    bodies = rest_load.bodies(api, 4, "mnist")
    assert len(bodies) == rest_load.DISTINCT_BODIES and len(set(bodies)) == len(bodies)
    assert all(isinstance(b, bytes) for b in bodies)
    first = json.loads(bodies[0])
    count = len(first["instances"]) if api == rest_load.TFSERVING_INSTANCES else first["packed"]["count"]
    assert count == 4


def test_unknown_api_is_refused():
    with pytest.raises(ValueError, match="unknown api"):
        rest_load.bodies("graphql", 1, "mnist")


@pytest.mark.parametrize("target", ["127.0.0.1:8501", "localhost:8501", "[::1]:8501", "127.0.0.2:80"])
def test_loopback_targets_are_accepted(target):
    check_loopback(target)
    assert rest_load.url(target, rest_load.TFSERVING_INSTANCES, "mnist").endswith("/v1/models/mnist:predict")


@pytest.mark.parametrize("target", ["10.0.0.5:8501", "192.168.1.20:8501", "[2001:db8::1]:8501", "8.8.8.8:80"])
def test_other_targets_are_refused_before_anything_is_sent(target):
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(rest_load.closed_loop(target, rest_load.CLASSIFY_JSON, 1, 1, seconds=0.1, warmup=0.0))


def test_closed_loop_result_counts_the_measured_window():
    result = closed_loop_result(
        [0.001, 0.002, 0.003], Counter({"HTTP 503": 2}), sent=10, elapsed=0.5, batch=4, cpu_s=0.01
    )
    assert result["ok"] == 3 and result["failed"] == 2 and result["errors"] == {"HTTP 503": 2}
    assert result["requests_per_s"] == pytest.approx(6.0) and result["images_per_s"] == pytest.approx(24.0)
    assert result["client_cpu_us_per_request"] == pytest.approx(1000.0)
    assert result["p50_ms"] == pytest.approx(2.0)


async def _against_fake_server(status: int, api: str) -> tuple[dict, list[bytes]]:
    """rest_load.closed_loop briefly against an aiohttp server on 127.0.0.1 answering `status`."""
    received: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        received.append(await request.read())
        return web.json_response({"predictions": [{"classes": 7}]}, status=status)

    app = web.Application()
    app.router.add_post(rest_load.PATHS[api].format(model="mnist"), answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        result = await rest_load.closed_loop(f"127.0.0.1:{port}", api, 4, 1, seconds=0.3, warmup=0.05)
    finally:
        await runner.cleanup()
    return result, received


def test_closed_loop_sends_the_prepared_bodies_and_counts_answers():
    result, received = asyncio.run(_against_fake_server(200, rest_load.TFSERVING_INSTANCES))
    assert result["ok"] > 0 and result["failed"] == 0 and result["images_per_s"] > 0
    assert result["requests"] == len(received)  # warm-up included
    assert set(received) <= set(rest_load.bodies(rest_load.TFSERVING_INSTANCES, 1, "mnist"))


def test_answers_other_than_200_are_counted_as_errors_by_status():
    result, _ = asyncio.run(_against_fake_server(503, rest_load.CLASSIFY_JSON))
    assert result["ok"] == 0 and result["failed"] > 0 and set(result["errors"]) == {"HTTP 503"}


def test_perf_analyzer_gets_time_for_its_requests_within_a_ceiling():
    from benchmarks import triton_load

    assert triton_load.timeout_s(100) == triton_load.MIN_TIMEOUT_S + 1.0
    assert triton_load.timeout_s(2_000) > 2_000 / 600  # the slowest door measured: about 600 requests/s
    assert triton_load.timeout_s(10**7) == triton_load.TIMEOUT_S
