"""Overload and deadlines on a real server whose capacity is made small on purpose
(`--max-batch-size 1`: one model call per image; a 512-image queue).

- Offered load far above capacity: the excess is refused with RESOURCE_EXHAUSTED, faster than
  accepted calls are answered; every accepted call is answered correctly; the server's resident
  memory stays flat; the first call after the storm is served at once.
- Deadlines shorter than the queue wait: DEADLINE_EXCEEDED, and the model never computes them.
- Calls beyond --max-concurrent-rpcs: refused at once.
The first runs the trained model; the other two need a backlog that lasts, so they run the fake model
(tests/support/fake_model_server.py) at 5 ms a call in a real server process.
Every loop is bounded in time and count; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest

from mnist_client import AsyncMnistClient, ClientError, MnistClient
from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.fake_model import fake_classes, write_fake_versions
from tests.support.server_process import ServerProcess, metric, scrape_metrics, wait_for_queue_depth
from tests.support.synthetic import synthetic_arrays

FLAGS = [
    "--max-batch-size",
    "1",
    "--max-queue-images",
    "512",
    "--max-images-per-request",
    "256",
    "--max-concurrent-rpcs",
    "64",
]
REQUEST_IMAGES = 64
BATCHES = 4  # distinct requests, each with its own known answer
CALLERS = 48  # x 64 images = 3072 images wanted at once, six times the queue
STORM_S = 6.0
MAX_CALLS = 100_000  # a bound on the storm besides its duration
TIMEOUT_S = 20.0  # far above any queue wait: a timeout would be a failure to shed load
SLOW_MODEL_MS = 5  # the slow server's cost per model call (one image a call): 256 queued images last 1.28 s


@pytest.fixture(scope="module")
def small_server(exported_model):
    with ServerProcess(["--model-dir", str(exported_model), *FLAGS]) as proc:
        yield proc


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """The tests below need a backlog that lasts while the next calls are sent: TensorFlow's ~1 ms per
    batch-1 call (LiteRT's less) clears 256 queued images before a loaded machine has sent ten more
    calls, so the model here is the fake one at 5 ms a call, in a real server process. What they test
    (deadlines, the RPC limit) lives in the batcher and gRPC, whatever computes the model."""
    base = write_fake_versions(tmp_path_factory.mktemp("slow") / "mnist")
    with ServerProcess(
        ["--compute-ms", str(SLOW_MODEL_MS), "--model-dir", str(base), *FLAGS], module="tests.support.fake_model_server"
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def batches():
    images, _ = synthetic_arrays(REQUEST_IMAGES * BATCHES, seed=51)
    return [images[i * REQUEST_IMAGES : (i + 1) * REQUEST_IMAGES] for i in range(BATCHES)]


@pytest.fixture(scope="module")
def reference(small_server, batches):
    with MnistClient(small_server.target, timeout=TIMEOUT_S) as client:
        return [[p.label for p in client.classify(batch)] for batch in batches]


@pytest.fixture(scope="module")
def slow_reference(batches):
    return [fake_classes(batch).tolist() for batch in batches]


def packed(images: np.ndarray) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(packed=pb.PackedImages(data=images.tobytes(), count=len(images), height=28, width=28))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            self.samples.append(rss_bytes(self.pid))


async def closed_loop(target: str, batches, reference, callers: int, seconds: float) -> list[tuple[str, float]]:
    """`callers` tasks sending back to back until `seconds` pass; (outcome, latency) per call.
    Outcome: 'OK' (answer checked), 'WRONG', or the status code name."""
    outcomes: list[tuple[str, float]] = []
    stop = time.monotonic() + seconds

    async def caller(client: AsyncMnistClient, index: int) -> None:
        while time.monotonic() < stop and len(outcomes) < MAX_CALLS:
            k = (index + len(outcomes)) % len(batches)
            started = time.perf_counter()
            try:
                labels = [p.label for p in await client.classify(batches[k])]
                outcome = "OK" if labels == reference[k] else "WRONG"
            except ClientError as error:
                outcome = error.code.name
            outcomes.append((outcome, time.perf_counter() - started))

    async with AsyncMnistClient(target, timeout=TIMEOUT_S, retries=0) as client:
        await asyncio.gather(*(caller(client, i) for i in range(callers)))
    return outcomes


def test_excess_load_is_shed_fast_and_accepted_calls_are_answered_right(small_server, batches, reference):
    target, pid = small_server.target, small_server.proc.pid
    # Capacity: what 4 callers get through a 256-image queue (nothing refused), unloaded.
    measured = asyncio.run(closed_loop(target, batches, reference, callers=4, seconds=2.0))
    assert {outcome for outcome, _ in measured} == {"OK"}
    capacity = len(measured) * REQUEST_IMAGES / 2.0  # images/s
    before = scrape_metrics(small_server.http_url)
    sampler = RssSampler(pid)
    baseline = rss_bytes(pid)
    sampler.start()
    started = time.monotonic()
    storm = asyncio.run(closed_loop(target, batches, reference, CALLERS, STORM_S))
    elapsed = time.monotonic() - started
    sampler.done.set()
    sampler.join()
    # Load drops: the very next call is served, nothing left queued.
    with MnistClient(target, timeout=TIMEOUT_S, retries=0) as client:
        assert [p.label for p in client.classify(batches[0])] == reference[0]
    after = scrape_metrics(small_server.http_url)

    counts = Counter(outcome for outcome, _ in storm)
    assert set(counts) == {"OK", "RESOURCE_EXHAUSTED"}, counts  # no timeout, no wrong answer, no error
    offered = len(storm) * REQUEST_IMAGES / elapsed
    factor = offered / capacity
    print(
        f"\ncapacity {capacity:.0f} images/s; offered {offered:.0f} images/s = {factor:.1f}x; "
        f"calls {dict(counts)}; RSS baseline {baseline / 2**20:.0f} MiB, peak {max(sampler.samples) / 2**20:.0f} MiB"
    )
    # "Far above capacity", judged by what the server did: the storm's clients share the 2 cores with the
    # server, so offered/unloaded-capacity (4.9x-6.5x in recent runs; a bound of 5x failed twice in CI)
    # measures the load generator as much as the server. Three refusals per answer (about ten were seen)
    # means at least three quarters of the offered load found the queue full.
    assert counts["RESOURCE_EXHAUSTED"] >= 3 * counts["OK"], f"not overloaded: {dict(counts)}, {factor:.1f}x"
    refused = [latency for outcome, latency in storm if outcome == "RESOURCE_EXHAUSTED"]
    served = [latency for outcome, latency in storm if outcome == "OK"]
    print(
        f"median latency: refused {statistics.median(refused) * 1000:.1f} ms, "
        f"served {statistics.median(served) * 1000:.1f} ms"
    )
    assert statistics.median(refused) < statistics.median(served)  # shed at once, not after queueing
    assert max(refused) < TIMEOUT_S / 4

    # The server counted exactly what the clients saw: refusals at the queue, and the answers.
    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("mnist_serving_requests_dropped_total", reason="queue_full") == counts["RESOURCE_EXHAUSTED"]
    assert (
        delta("mnist_serving_requests_total", method="mnist_serving.v1.Classifier/Classify", code="OK")
        == counts["OK"] + 1
    )
    assert metric(after, "mnist_serving_queue_depth", model="mnist") == 0
    # Memory: bounded by the queue, not by the offered load, and not growing during the storm.
    half = len(sampler.samples) // 2
    assert max(sampler.samples) - baseline < 150 * 2**20
    assert max(sampler.samples[half:]) - max(sampler.samples[:half]) < 32 * 2**20


def test_deadlines_shorter_than_the_queue_wait_cost_no_compute(slow_server, batches, slow_reference):
    big = np.concatenate(batches)  # 256 images = 256 model calls ahead of anything sent next
    with grpc.insecure_channel(slow_server.target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        started = time.perf_counter()  # connects too, so the short deadlines below go to queueing
        stub.Classify(packed(big), timeout=TIMEOUT_S)
        big_s = time.perf_counter() - started  # what 256 queued images cost, on this machine
        before = scrape_metrics(slow_server.http_url)
        queued = stub.Classify.future(packed(big), timeout=TIMEOUT_S)
        wait_for_queue_depth(slow_server.http_url, 200, "the big request never queued")
        # Ten callers at once, each allowing a quarter of that: at least 200 images are ahead of them.
        late = [stub.Classify.future(packed(batches[i % BATCHES][i : i + 1]), timeout=big_s / 4) for i in range(10)]
        codes = [future.exception().code() for future in late]
        assert [p.label for p in queued.result().predictions] == sum(slow_reference, [])
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 10

    # The client's own timer ends its calls; the server counts a call's status when its handler
    # finishes, a moment later on a busy machine: let the counts settle (bounded).
    settle_by = time.monotonic() + 5
    while True:
        after = scrape_metrics(slow_server.http_url)

        def delta(name, **labels):
            return metric(after, name, **labels) - metric(before, name, **labels)  # noqa: B023 - used in this pass

        # The server saw them expire and dropped each from the queue: "cancelled" (the caller had gone)
        # or "deadline" (found expired when its batch formed). A call whose deadline passes before the
        # server has even read it is ended by gRPC unseen and uncounted (on a loaded CI machine, with
        # TensorFlow's model and ~70 ms deadlines, 9 of the 10), so how many are counted is not bounded
        # below here; test_inprocess_deadlines.py insists on all ten...
        # The status it records: DEADLINE_EXCEEDED when its own copy of the deadline had passed, CANCELLED
        # when the client's timer (which started first) cancelled the call a moment before that.
        expired = sum(
            delta("mnist_serving_requests_total", method="mnist_serving.v1.Classifier/Classify", code=code)
            for code in ("DEADLINE_EXCEEDED", "CANCELLED")
        )
        dropped = delta("mnist_serving_requests_dropped_total", reason="cancelled") + delta(
            "mnist_serving_requests_dropped_total", reason="deadline"
        )
        if dropped == expired or time.monotonic() > settle_by:
            break
        time.sleep(0.05)
    print(f"\n10 calls expired in the queue; the server counted {expired:.0f} (each dropped, none computed)")
    assert expired <= 10
    # A call the server read just as its deadline passed can be cancelled before it reached the queue:
    # counted, not dropped (there was nothing to drop), and not computed either.
    assert dropped <= expired
    # ...so the model computed the big request's 256 images and not one more.
    assert delta("mnist_serving_images_total", model="mnist") == 256
    assert delta("mnist_serving_batch_size_count", model="mnist") == 256


def test_calls_beyond_the_concurrent_rpc_limit_are_refused_at_once(slow_server, batches, slow_reference):
    """--max-concurrent-rpcs 64 bounds what the server holds (each call up to a full message)."""
    with grpc.insecure_channel(slow_server.target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        stub.Classify(packed(batches[0][:1]), timeout=TIMEOUT_S)
        ahead = stub.Classify.future(packed(np.concatenate(batches)), timeout=TIMEOUT_S)  # 256 model calls
        wait_for_queue_depth(slow_server.http_url, 128, "the big request never queued")
        calls = [stub.Classify.future(packed(batches[i % BATCHES][:1]), timeout=TIMEOUT_S) for i in range(100)]
        outcomes = Counter()
        for call in calls:
            error = call.exception()
            outcomes["OK" if error is None else (error.code().name, error.details())] += 1
        assert [p.label for p in ahead.result().predictions] == sum(slow_reference, [])
    print(f"\n100 calls behind a busy model with --max-concurrent-rpcs 64: {dict(outcomes)}")
    refused = outcomes[("RESOURCE_EXHAUSTED", "Concurrent RPC limit exceeded!")]
    assert set(outcomes) == {"OK", ("RESOURCE_EXHAUSTED", "Concurrent RPC limit exceeded!")}, outcomes
    assert refused >= 100 - 64 + 1  # the big call holds one of the 64 slots
