"""The shared slots on their own: taken without waiting when free, handed to the lane served least
recently, never lost to a lane that gave up waiting."""

from __future__ import annotations

import asyncio

import pytest

from mnist_server.device_slots import DeviceSlots
from tests.support.batching import run


async def _settle():
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_free_slot_is_taken_at_once_and_comes_back():
    slots = DeviceSlots(2)
    a, b = slots.lane(), slots.lane()
    assert a.try_acquire() and b.try_acquire()
    assert slots.free == 0 and not a.try_acquire()
    a.release()
    b.release()
    assert slots.free == 2
    with pytest.raises(RuntimeError, match="not held"):
        a.release()
    with pytest.raises(ValueError):
        DeviceSlots(0)


def test_a_freed_slot_goes_to_the_lane_served_least_recently():
    async def scenario():
        slots = DeviceSlots(1)
        a, b, c = slots.lane(), slots.lane(), slots.lane()
        order = []

        async def turn(name, lane):
            await lane.acquire()
            order.append(name)
            lane.release()

        assert c.try_acquire()  # c computes, then lines up again first, before b and a (never served)
        waiting = [asyncio.ensure_future(turn(name, lane)) for name, lane in (("c", c), ("b", b), ("a", a))]
        await _settle()
        assert slots.waiting == 3
        c.release()
        await asyncio.gather(*waiting)
        assert order == ["b", "a", "c"]  # among equals (never served) the first in line
        assert (slots.free, slots.waiting) == (1, 0)

    run(scenario())


def test_while_lanes_wait_a_free_slot_is_not_taken_past_them():
    async def scenario():
        slots = DeviceSlots(1)
        a, b = slots.lane(), slots.lane()
        assert a.try_acquire()
        waiting = asyncio.ensure_future(b.acquire())
        await _settle()
        a.release()  # handed to b directly: a cannot take it back before b runs
        assert not a.try_acquire()
        await waiting
        b.release()
        assert slots.free == 1

    run(scenario())


def test_a_lane_that_gives_up_waiting_leaves_the_line():
    async def scenario():
        slots = DeviceSlots(1)
        a, b = slots.lane(), slots.lane()
        assert a.try_acquire()
        waiting = asyncio.ensure_future(b.acquire())
        await _settle()
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert slots.waiting == 0
        a.release()
        assert slots.free == 1

    run(scenario())


def test_a_slot_handed_to_a_lane_that_just_gave_up_goes_to_the_next():
    async def scenario():
        slots = DeviceSlots(1)
        a, b, c = slots.lane(), slots.lane(), slots.lane()
        assert a.try_acquire()
        gives_up = asyncio.ensure_future(b.acquire())
        await _settle()
        keeps = asyncio.ensure_future(c.acquire())
        await _settle()
        a.release()  # handed to b (waiting longer; neither served yet) ...
        gives_up.cancel()  # ... which is cancelled before it could run
        await asyncio.gather(gives_up, return_exceptions=True)
        await keeps  # c got it
        c.release()
        assert (slots.free, slots.waiting) == (1, 0)

    run(scenario())


def test_one_lane_waits_for_one_slot_at_a_time():
    async def scenario():
        slots = DeviceSlots(1)
        a, b = slots.lane(), slots.lane()
        assert a.try_acquire()
        first = asyncio.ensure_future(b.acquire())
        await _settle()
        with pytest.raises(RuntimeError, match="already waiting"):
            await b.acquire()
        a.release()
        await first

    run(scenario())
