"""The batcher's test doubles: a fake model that a test can hold busy, an observer that records,
a clock a test moves by hand (tests/unit/test_batcher*.py). No TensorFlow, no sockets."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import numpy as np

from mnist_server.batcher import Batcher, BatchObserver

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


def items(*values, width=3):
    """One item per value: a row of `width` copies of it."""
    return np.array([[v] * width for v in values], dtype=np.int64)


def make(model, executor, **overrides):
    options = dict(
        max_batch_size=4, batch_timeout_s=0.0, max_queue_images=100, executor=executor, observer=RecordingObserver()
    )
    options.update(overrides)
    return Batcher(model, **options)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, BOUND))


class SleepingModel:
    """predict(x) -> 2x after sleeping `seconds` on the calling thread (a model with a known compute
    time); records each call's own duration, measured around the sleep, and its batch size."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.calls: list[tuple[int, float]] = []  # (images, own seconds)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        time.sleep(self.seconds)
        self.calls.append((len(batch), time.perf_counter() - started))
        return batch * 2


class TimingObserver(BatchObserver):
    """Records what the batcher reports per batch: sizes, compute times, queue waits; `log` (shared
    between observers if given) gets ("start", name) per batch in the order batches start."""

    def __init__(self, name: str = "", log: list | None = None):
        self.name = name
        self.log = log if log is not None else []
        self.sizes: list[int] = []
        self.computes: list[float] = []
        self.waits: list[float] = []

    def batch_started(self, images, queue_waits_s):
        self.sizes.append(images)
        self.waits.extend(queue_waits_s)
        self.log.append(("start", self.name))

    def batch_finished(self, images, compute_s, ok, queue_waits_s=None):
        self.computes.append(compute_s)


async def closed_loop(
    batcher, callers: int, rounds: int, value: int = 1, think_s: float = 0.05, seed: int = 0
) -> list[float]:
    """`callers` clients each sending one image, then after a random pause (up to `think_s`, also
    before the first) the next once answered, `rounds` times: arrivals spread in time, as from
    independent clients. Returns every request's latency (submit to answer)."""
    latencies: list[float] = []
    pauses = random.Random(seed)

    async def caller():
        for _ in range(rounds):
            await asyncio.sleep(pauses.uniform(0, think_s))
            started = time.perf_counter()
            await batcher.submit(items(value))
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(caller() for _ in range(callers)))
    return latencies
