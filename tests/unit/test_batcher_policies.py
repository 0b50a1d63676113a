"""Batcher policies with a fake model: small batches on the event loop's thread, the adaptive wait
for company, concurrent batches. No timed assertions: a fake clock and a held model decide."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.batching import FakeClock, FakeModel, items, make, run


@pytest.fixture
def executor():
    with ThreadPoolExecutor(1) as pool:
        yield pool


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
