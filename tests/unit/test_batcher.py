"""The batcher with a fake predict function: no TensorFlow, no sockets, no timed assertions.

A gate lets a test hold the (fake) model busy, so it decides exactly what is queued when the
next batch forms. Where batches are computed and when they wait for company: test_batcher_policies.py.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mnist_server.errors import BatcherClosed, DeadlineExceeded, ModelFailure, Overloaded
from tests.support.batching import BOUND, FakeClock, FakeModel, RecordingObserver, items, make, run


@pytest.fixture
def executor():
    with ThreadPoolExecutor(1) as pool:
        yield pool


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
