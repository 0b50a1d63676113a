"""Many concurrent clients, each must get the answers for its own images (shared server)."""

from __future__ import annotations

import asyncio

import numpy as np

from mnist_client import AsyncMnistClient, MnistClient
from tests.support.server_process import metric, scrape_metrics
from tests.support.synthetic import synthetic_arrays

CLIENTS = 4
CALLS_PER_CLIENT = 24  # 96 concurrent requests of 1-3 images


def test_concurrent_clients_each_get_their_own_answers(server):
    images, _ = synthetic_arrays(CLIENTS * CALLS_PER_CLIENT * 3, seed=21)
    with MnistClient(server.target, timeout=20) as client:  # the reference: each image alone
        alone = [client.classify(image[None])[0] for image in images]
    requests = []  # (client index, first image, count): distinct images per request
    start = 0
    for i in range(CLIENTS * CALLS_PER_CLIENT):
        count = 1 + i % 3
        requests.append((i % CLIENTS, start, count))
        start += count
    before = scrape_metrics(server.http_url)

    async def run_all():
        clients = [AsyncMnistClient(server.target, timeout=30) for _ in range(CLIENTS)]
        try:
            return await asyncio.gather(*(clients[c].classify(images[s : s + n]) for c, s, n in requests))
        finally:
            await asyncio.gather(*(c.close() for c in clients))

    replies = asyncio.run(asyncio.wait_for(run_all(), 60))
    after = scrape_metrics(server.http_url)
    for (_, first, count), predictions in zip(requests, replies):
        assert len(predictions) == count
        for offset, prediction in enumerate(predictions):
            reference = alone[first + offset]
            assert prediction.label == reference.label
            np.testing.assert_allclose(prediction.probabilities, reference.probabilities, atol=1e-5)

    images_sent = sum(n for _, _, n in requests)
    batched_images = metric(after, "mnist_serving_batch_size_sum", model="mnist") - metric(
        before, "mnist_serving_batch_size_sum", model="mnist"
    )
    batches = metric(after, "mnist_serving_batch_size_count", model="mnist") - metric(
        before, "mnist_serving_batch_size_count", model="mnist"
    )
    assert batched_images == images_sent
    assert batches < len(requests)  # requests from different clients shared model calls


def test_one_connection_with_hundreds_of_calls_in_flight_gets_no_refusal(server):
    """400 calls at once on one HTTP/2 connection, below --max-concurrent-rpcs (512): all answered.
    A per-connection stream limit below that (the old default, 256) refused some with
    UNAVAILABLE "RST_STREAM with error code 7" (REFUSED_STREAM) instead of queueing them."""
    import grpc

    from mnist_serving.v1 import classifier_pb2 as pb
    from mnist_serving.v1 import classifier_pb2_grpc

    request = pb.ClassifyRequest(packed=pb.PackedImages(data=bytes(784), count=1, height=28, width=28))

    async def bursts() -> list[str]:
        async with grpc.aio.insecure_channel(server.target) as channel:  # no retry policy: refusals show
            stub = classifier_pb2_grpc.ClassifierStub(channel)

            async def one() -> str:
                try:
                    await stub.Classify(request, timeout=30)
                    return "OK"
                except grpc.aio.AioRpcError as exc:
                    return f"{exc.code().name}: {exc.details()}"

            outcomes = []
            for _ in range(3):
                outcomes += await asyncio.gather(*(one() for _ in range(400)))
            return outcomes

    outcomes = asyncio.run(asyncio.wait_for(bursts(), 120))
    failures = [o for o in outcomes if o != "OK"]
    assert not failures, f"{len(failures)} of {len(outcomes)} failed, first: {failures[0]}"
