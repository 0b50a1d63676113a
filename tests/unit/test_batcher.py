"""The batcher with a fake predict function: no TensorFlow, no sockets, no timed assertions.

A gate lets a test hold the (fake) model busy, so it decides exactly what is queued when the
next batch forms.
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mnist_server.batcher import Batcher, BatchObserver
from mnist_server.errors import BatcherClosed, DeadlineExceeded, ModelFailure, Overloaded

BOUND = 10.0  # seconds: a hung future fails the test instead of hanging it


class FakeModel:
    """predict(x) -> {"double": 2x, "first": x[:, 0]}; records every batch; can be held busy."""

    def __init__(self, fail_when=None, wrong_length=False):
        self.batches: list[np.ndarray] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_when = fail_when
        self.wrong_length = wrong_length

    def __call__(self, items: np.ndarray):
        self.batches.append(items.copy())
        self.entered.set()
        assert self.gate.wait(BOUND), "test never opened the gate"
        if self.fail_when is not None and self.fail_when(items):
            raise RuntimeError("fake model failure")
        if self.wrong_length:
            return {"double": items[:-1] * 2}
        return {"double": items * 2, "first": items[:, 0].copy()}

    def hold(self):
        self.gate.clear()
        self.entered.clear()

    async def wait_entered(self):
        assert await asyncio.to_thread(self.entered.wait, BOUND), "model was never called"


class RecordingObserver(BatchObserver):
    def __init__(self):
        self.batch_sizes: list[int] = []
        self.drops: list[str] = []
        self.depths: list[int] = []
        self.finished: list[tuple[int, bool]] = []

    def queue_depth(self, images):
        self.depths.append(images)

    def batch_started(self, images, queue_waits_s):
        assert all(wait >= 0 for wait in queue_waits_s)
        self.batch_sizes.append(images)

    def batch_finished(self, images, compute_s, ok, queue_waits_s=None):
        self.finished.append((images, ok))

    def dropped(self, reason, requests=1):
        self.drops.extend([reason] * requests)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def executor():
    with ThreadPoolExecutor(1) as pool:
        yield pool


def items(*values, width=3):
    """One item per value: a row of `width` copies of it."""
    return np.array([[v] * width for v in values], dtype=np.int64)


def make(model, executor, **overrides):
    options = dict(max_batch_size=4, batch_timeout_s=0.0, max_queue_images=100, executor=executor,
                   observer=RecordingObserver())
    options.update(overrides)
    return Batcher(model, **options)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, BOUND))


def test_each_request_gets_its_own_outputs_in_order(executor):
    model = FakeModel()

    async def scenario():
        batcher = make(model, executor, max_batch_size=64)
        requests = [items(*range(10 * i, 10 * i + (i % 3) + 1)) for i in range(30)]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        for request, result in zip(requests, results):
            np.testing.assert_array_equal(result["double"], request * 2)
            np.testing.assert_array_equal(result["first"], request[:, 0])
        await batcher.close()

    run(scenario())


def test_requests_queued_while_the_model_is_busy_form_one_batch(executor):
    model = FakeModel()
    observer = RecordingObserver()

    async def scenario():
        batcher = make(model, executor, max_batch_size=8, observer=observer)
        model.hold()
        first = asyncio.ensure_future(batcher.submit(items(1)))
        await model.wait_entered()  # the model is busy with [1]
        later = [asyncio.ensure_future(batcher.submit(items(v))) for v in (2, 3, 4)]
        await asyncio.sleep(0)  # let them enqueue
        assert batcher.queued_images == 3
        model.gate.set()
        await asyncio.gather(first, *later)
        await batcher.close()

    run(scenario())
    assert [len(b) for b in model.batches] == [1, 3]
    np.testing.assert_array_equal(model.batches[1][:, 0], [2, 3, 4])
    assert observer.batch_sizes == [1, 3]


def test_batch_timeout_waits_for_company_but_not_once_full(executor):
    model = FakeModel()

    async def scenario():
        # A timeout longer than the test bound: only "batch full" can release the batch.
        batcher = make(model, executor, max_batch_size=4, batch_timeout_s=3 * BOUND)
        results = await asyncio.gather(*(batcher.submit(items(v)) for v in range(4)))
        assert [int(r["first"][0]) for r in results] == [0, 1, 2, 3]
        await batcher.close()

    run(scenario())
    assert [len(b) for b in model.batches] == [4]


def test_batch_timeout_releases_a_lone_request(executor):
    model = FakeModel()

    async def scenario():
        batcher = make(model, executor, max_batch_size=4, batch_timeout_s=0.01)
        first = asyncio.ensure_future(batcher.submit(items(1)))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(batcher.submit(items(2)))  # within the window: same batch
        await asyncio.gather(first, second)
        await batcher.close()

    run(scenario())
    assert [len(b) for b in model.batches] == [2]


def test_a_request_bigger_than_the_max_batch_is_split_and_reassembled(executor):
    model = FakeModel()

    async def scenario():
        batcher = make(model, executor, max_batch_size=4)
        request = items(*range(10))
        result = await batcher.submit(request)
        np.testing.assert_array_equal(result["double"], request * 2)
        await batcher.close()

    run(scenario())
    assert all(len(b) <= 4 for b in model.batches)
    assert sum(len(b) for b in model.batches) == 10


def test_a_full_queue_refuses_at_once_and_recovers(executor):
    model = FakeModel()
    observer = RecordingObserver()

    async def scenario():
        batcher = make(model, executor, max_batch_size=2, max_queue_images=4, observer=observer)
        model.hold()
        busy = asyncio.ensure_future(batcher.submit(items(0)))
        await model.wait_entered()
        queued = asyncio.ensure_future(batcher.submit(items(1, 2, 3, 4)))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(items(5))
        assert "4 images queued" in refused.value.message and "limit of 4" in refused.value.message
        model.gate.set()
        await asyncio.gather(busy, queued)
        np.testing.assert_array_equal((await batcher.submit(items(6)))["first"], [6])
        await batcher.close()

    run(scenario())
    assert observer.drops == ["queue_full"]


def test_deadlines_passed_are_dropped_before_compute(executor):
    model = FakeModel()
    clock = FakeClock()
    observer = RecordingObserver()

    async def scenario():
        batcher = make(model, executor, clock=clock, observer=observer)
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(items(9), deadline=clock.now - 1)
        model.hold()
        busy = asyncio.ensure_future(batcher.submit(items(0)))
        await model.wait_entered()
        expiring = asyncio.ensure_future(batcher.submit(items(1), deadline=clock.now + 5))
        keeps = asyncio.ensure_future(batcher.submit(items(2), deadline=clock.now + 60))
        await asyncio.sleep(0)
        clock.now += 10  # the first one's deadline passes while it waits in the queue
        model.gate.set()
        await busy
        with pytest.raises(DeadlineExceeded, match="queue"):
            await expiring
        np.testing.assert_array_equal((await keeps)["first"], [2])
        await batcher.close()

    run(scenario())
    computed = np.concatenate(model.batches)[:, 0].tolist()
    assert 1 not in computed and 9 not in computed
    assert observer.drops == ["deadline", "deadline"]


def test_a_cancelled_request_is_not_computed(executor):
    model = FakeModel()
    observer = RecordingObserver()

    async def scenario():
        batcher = make(model, executor, observer=observer)
        model.hold()
        busy = asyncio.ensure_future(batcher.submit(items(0)))
        await model.wait_entered()
        cancelled = asyncio.ensure_future(batcher.submit(items(1)))
        kept = asyncio.ensure_future(batcher.submit(items(2)))
        await asyncio.sleep(0)
        cancelled.cancel()
        model.gate.set()
        await asyncio.gather(busy, kept)
        assert cancelled.cancelled()
        await batcher.close()

    run(scenario())
    assert 1 not in np.concatenate(model.batches)[:, 0].tolist()
    assert observer.drops == ["cancelled"]


def test_model_error_fails_only_the_request_that_causes_it(executor):
    model = FakeModel(fail_when=lambda x: bool((x == 13).any()))
    observer = RecordingObserver()

    async def scenario():
        batcher = make(model, executor, max_batch_size=8, observer=observer)
        model.hold()
        busy = asyncio.ensure_future(batcher.submit(items(0)))
        await model.wait_entered()
        good = [asyncio.ensure_future(batcher.submit(items(v))) for v in (1, 2)]
        bad = asyncio.ensure_future(batcher.submit(items(13)))
        more = asyncio.ensure_future(batcher.submit(items(3)))
        await asyncio.sleep(0)
        model.gate.set()
        await busy
        results = await asyncio.gather(*good, bad, more, return_exceptions=True)
        assert [int(r["first"][0]) for r in results[:2]] == [1, 2]
        assert isinstance(results[2], ModelFailure) and "internal" not in results[2].message.lower()
        assert int(results[3]["first"][0]) == 3
        # the next batch is fine
        np.testing.assert_array_equal((await batcher.submit(items(4)))["first"], [4])
        await batcher.close()

    run(scenario())
    assert (4, False) in observer.finished  # the shared batch failed, then each was retried alone


def test_outputs_of_the_wrong_length_fail_the_batch(executor):
    model = FakeModel(wrong_length=True)

    async def scenario():
        batcher = make(model, executor)
        with pytest.raises(ModelFailure):
            await batcher.submit(items(1, 2))
        await batcher.close()

    run(scenario())


def test_a_malformed_request_fails_alone(executor):
    model = FakeModel()

    async def scenario():
        batcher = make(model, executor, item_shape=(3,), item_dtype=np.int64)
        with pytest.raises(ValueError, match=r"shape \[N, 3\]"):
            await batcher.submit(np.zeros((2, 4), np.int64))
        with pytest.raises(ValueError, match="dtype int64"):
            await batcher.submit(np.zeros((2, 3), np.float32))
        with pytest.raises(ValueError, match="empty"):
            await batcher.submit(np.zeros((0, 3), np.int64))
        results = await asyncio.gather(batcher.submit(items(1)), batcher.submit(items(2)))
        assert [int(r["first"][0]) for r in results] == [1, 2]
        await batcher.close()

    run(scenario())


def test_close_finishes_queued_requests_then_refuses(executor):
    model = FakeModel()

    async def scenario():
        batcher = make(model, executor, max_batch_size=2)
        model.hold()
        busy = asyncio.ensure_future(batcher.submit(items(0)))
        await model.wait_entered()
        queued = [asyncio.ensure_future(batcher.submit(items(v))) for v in (1, 2, 3)]
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0)
        with pytest.raises(BatcherClosed):
            await batcher.submit(items(9))
        model.gate.set()
        await closing
        results = await asyncio.gather(busy, *queued)
        assert [int(r["first"][0]) for r in results] == [0, 1, 2, 3]

    run(scenario())


def test_close_with_a_stuck_model_settles_every_future(executor):
    model = FakeModel()

    async def scenario():
        batcher = make(model, executor)
        model.hold()
        stuck = asyncio.ensure_future(batcher.submit(items(0)))
        await model.wait_entered()
        queued = asyncio.ensure_future(batcher.submit(items(1)))
        await asyncio.sleep(0)
        await batcher.close(timeout=0.01)
        results = await asyncio.gather(stuck, queued, return_exceptions=True)
        assert all(isinstance(r, BatcherClosed) for r in results)
        model.gate.set()  # let the worker thread finish

    run(scenario())


def test_plain_array_outputs_are_split_too(executor):
    async def scenario():
        batcher = make(lambda x: x.sum(axis=1), executor, max_batch_size=3)
        result = await batcher.submit(items(1, 2, 3, 4, 5))
        np.testing.assert_array_equal(result, [3, 6, 9, 12, 15])
        await batcher.close()

    run(scenario())


def test_small_batches_run_on_the_event_loop_thread_larger_ones_on_the_executor(executor):
    threads = []

    def model(batch):
        threads.append((len(batch), threading.get_ident()))
        return batch * 2

    async def scenario():
        batcher = make(model, executor, max_batch_size=8, inline_max_items=2)
        await batcher.submit(items(1, 2))
        await batcher.submit(items(1, 2, 3))
        await batcher.close()
        return threading.get_ident()

    loop_thread = run(scenario())
    assert threads[0] == (2, loop_thread)
    assert threads[1][0] == 3 and threads[1][1] != loop_thread


async def _arrivals(batcher, clock, gaps_s):
    """Submits one item per gap, advancing the fake clock by the gap before each; returns the tasks."""
    tasks = []
    for value, gap in enumerate(gaps_s):
        clock.now += gap
        tasks.append(asyncio.ensure_future(batcher.submit(items(value))))
        for _ in range(3):  # let the dispatcher run (and decide whether to wait) between arrivals
            await asyncio.sleep(0)
    return tasks


def test_adaptive_wait_gathers_requests_that_keep_coming(executor):
    model = FakeModel()
    clock = FakeClock()

    async def scenario():
        # the window is long in real time, so only the arrival pattern decides when the batch closes
        batcher = make(model, executor, max_batch_size=64, adaptive_window_s=60.0, clock=clock)
        primed = await _arrivals(batcher, clock, [0.001] * 5)  # a mean gap of 1 ms ...
        clock.now += 1.0
        await asyncio.gather(*primed)
        model.batches.clear()
        tasks = await _arrivals(batcher, clock, [0.001] * 4)  # ... and 4 more 1 ms apart: they wait together
        clock.now += 1.0  # a pause far longer than two mean gaps: the burst is over
        await asyncio.gather(*tasks)
        await batcher.close()

    run(scenario())
    assert [len(b) for b in model.batches] == [4]


def test_adaptive_wait_soon_stops_holding_a_lone_client(executor):
    model = FakeModel()

    async def scenario():
        batcher = make(model, executor, max_batch_size=64, adaptive_window_s=0.005)
        for _ in range(48):  # each request sent after the previous answer: company never comes
            await batcher.submit(items(1))
        await batcher.close()
        return batcher.waits_for_company

    waits = run(scenario())
    assert [len(b) for b in model.batches] == [1] * 48
    assert waits <= 4 + 48 // 16  # until fewer than half the waits found company, then the probes


def test_without_adaptive_wait_the_first_request_goes_alone(executor):
    model = FakeModel()
    clock = FakeClock()

    async def scenario():
        batcher = make(model, executor, max_batch_size=64, clock=clock)
        await asyncio.gather(*await _arrivals(batcher, clock, [0.001] * 5))
        model.batches.clear()
        model.hold()
        tasks = await _arrivals(batcher, clock, [0.001])
        await model.wait_entered()
        tasks += await _arrivals(batcher, clock, [0.001] * 3)
        model.gate.set()
        await asyncio.gather(*tasks)
        await batcher.close()

    run(scenario())
    assert [len(b) for b in model.batches] == [1, 3]


def test_with_two_concurrent_batches_the_next_one_starts_while_the_first_computes():
    model = FakeModel()

    async def scenario():
        with ThreadPoolExecutor(2) as pool:
            batcher = make(model, pool, max_batch_size=2, max_concurrent_batches=2)
            model.hold()
            first = [asyncio.ensure_future(batcher.submit(items(v))) for v in (1, 2)]
            await model.wait_entered()
            model.entered.clear()
            second = [asyncio.ensure_future(batcher.submit(items(v))) for v in (3, 4, 5)]
            await model.wait_entered()  # a second batch entered the model while the first is held
            assert batcher.queued_images == 1  # a third must wait for a free slot
            model.gate.set()
            results = await asyncio.gather(*first, *second)
            await batcher.close()
        return results

    results = run(scenario())
    assert [r["first"].tolist() for r in results] == [[1], [2], [3], [4], [5]]
    assert sorted(len(b) for b in model.batches) == [1, 2, 2]
