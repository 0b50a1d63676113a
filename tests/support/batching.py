"""The batcher's test doubles: a fake model that a test can hold busy, an observer that records,
a clock a test moves by hand (tests/unit/test_batcher*.py). No TensorFlow, no sockets."""
from __future__ import annotations

import asyncio
import threading

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
    options = dict(max_batch_size=4, batch_timeout_s=0.0, max_queue_images=100, executor=executor,
                   observer=RecordingObserver())
    options.update(overrides)
    return Batcher(model, **options)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, BOUND))
