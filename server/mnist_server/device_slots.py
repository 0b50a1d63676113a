"""The device's batch slots, shared by every batcher of a server (TensorFlow Serving's
SharedBatchScheduler, reduced to what an asyncio server needs).

A server computes at most `slots` batches at once (--max-concurrent-batches), whatever model they
belong to: one slot per model worker thread. Each batcher gets a `Lane` and takes a slot before it
takes its batch from its queue, so the batch holds everything that arrived while the device was
busy, and a batch never waits behind another model's in the executor (where its wait would pass
for compute time). A freed slot goes straight to the waiting lane that was granted one least
recently: between lanes that all have work that is round-robin, so a flooded model cannot starve
a quiet one (the quiet one waits for at most one batch per slot).

Everything runs on the event loop's thread: a free slot is taken without suspending (no future,
no thread hop); only a lane that must wait creates a future. A lane waits for one slot at a time
(its batcher's dispatcher), and a lane that gave up waiting (cancelled) passes on a slot it was
handed, so a closing batcher never keeps one.
"""

from __future__ import annotations

import asyncio


class DeviceSlots:
    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self._free = slots
        self._waiting: list[Lane] = []  # lanes with a pending `acquire` (a few: one per model version)
        self._grants = 0  # slots handed out so far: the order of grants, for fairness

    @property
    def free(self) -> int:
        return self._free

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def lane(self) -> Lane:
        """A batcher's place in the rotation (one per batcher)."""
        return Lane(self)

    def _grant(self, lane: Lane) -> None:
        self._grants += 1
        lane.last_grant = self._grants

    def _release(self) -> None:
        while self._waiting:
            lane = min(self._waiting, key=_last_grant)  # served longest ago goes first
            self._waiting.remove(lane)
            waiter, lane.waiter = lane.waiter, None
            if waiter is not None and not waiter.done():  # (done: cancelled, and not yet removed)
                self._grant(lane)
                waiter.set_result(None)
                return
        if self._free >= self.slots:
            raise RuntimeError("released a slot that was not held")
        self._free += 1


def _last_grant(lane: Lane) -> int:
    return lane.last_grant


class Lane:
    """One batcher's access to the shared slots: at most one `acquire` pending at a time."""

    def __init__(self, slots: DeviceSlots):
        self._slots = slots
        self.last_grant = 0
        self.waiter: asyncio.Future | None = None

    @property
    def slot_free(self) -> bool:
        """try_acquire() would succeed now."""
        return self._slots._free > 0 and not self._slots._waiting

    def try_acquire(self) -> bool:
        """A slot now if one is free and no lane is waiting for it."""
        slots = self._slots
        if slots._free and not slots._waiting:
            slots._free -= 1
            slots._grant(self)
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        if self.waiter is not None:
            raise RuntimeError("this lane is already waiting for a slot")
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        self._slots._waiting.append(self)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._slots._release()  # handed a slot just as we gave up: pass it on
            elif self in self._slots._waiting:
                self._slots._waiting.remove(self)
                self.waiter = None
            raise

    def release(self) -> None:
        self._slots._release()
