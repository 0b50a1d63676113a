"""Dynamic batching on asyncio, knowing nothing of gRPC or TensorFlow.

Callers `await submit(items, deadline)` with an array of N items (leading axis) and get back the
outputs for exactly those N items. One dispatcher task merges queued requests into one call of
`predict_fn` (run in `executor`, so the event loop keeps serving), splits the outputs back by
offsets and settles every waiting future: with a result, an exception, or a cancellation.

All batchers of a server (one per model version) share its `slots` (device_slots.py, one per model
worker thread): a batcher takes one before it takes a batch from its queue, until the model call
returns. So a batch forms when the device can run it at once, with all that came meanwhile, never
waiting behind another model's batch in the executor; slots go round-robin between batchers with
work. Compute time is measured around the model call on its thread; queue wait, until it starts.

The first request may also wait a fixed `batch_timeout_s` for company; or, with `adaptive_window_s`,
only where waiting has been finding company: while requests keep coming (no pause longer than two
mean gaps between arrivals), at most the window. When fewer than half of the recent waits found
company (a lone client, whose next request only comes after this answer) it stops waiting, but
tries every 16th batch. So a model too fast to batch by itself (LiteRT, small batches) gets full
batches from many clients, and a lone client is not held (docs/benchmarks.md). Only an idle device
is worth that wait (it holds no slot meanwhile); while it is busy, the wait for a slot does it.

Batches of at most `inline_max_items` items are computed on the event loop's thread, cheaper for a
model call shorter than the two thread hand-offs (about 100 us of CPU per batch, measured). They
take a slot too (a free one without suspending): they occupy a core like any batch, so N slots stay
N computations and one model's small batches do not jump the line ahead of another's. `predict_fn`
returns an array/sequence of length N or a dict of arrays of leading length N (model_call.py checks).
When it raises on a batch of several requests, each is retried alone (same slot): only the culprit
fails.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .device_slots import DeviceSlots
from .errors import BatcherClosed, DeadlineExceeded, ModelFailure, Overloaded, ServingError
from .model_call import concat_outputs, run_model, slice_outputs, worker_result

log = logging.getLogger(__name__)


GAP_WEIGHT = 0.1  # of the newest gap in the moving average: about the last ten arrivals
COMPANY_WEIGHT = 0.2  # of the newest adaptive wait in the share that found company: about the last five
COMPANY_WORTH_WAITING = 0.5  # below this share the batcher stops waiting ...
PROBE_EVERY = 16  # ... except on every 16th batch, to notice when company starts coming again


class BatchObserver:
    """Hooks for metrics; the default does nothing. Called on the event loop thread."""

    def queue_depth(self, images: int) -> None: ...

    def batch_started(self, images: int, queue_waits_s: list[float]) -> None: ...

    def batch_finished(self, images: int, compute_s: float, ok: bool, queue_waits_s: list[float] | None = None) -> None:
        """queue_waits_s: those batch_started gave for this batch (batches may overlap); None for
        the retry of one request alone after its batch failed."""

    def dropped(self, reason: str, requests: int = 1) -> None: ...


@dataclass(eq=False)
class _Pending:
    items: np.ndarray
    deadline: float | None
    enqueued: float
    future: asyncio.Future = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.items)


class Batcher:
    def __init__(
        self,
        predict_fn: Callable[[np.ndarray], Any],
        *,
        max_batch_size: int,
        batch_timeout_s: float,
        max_queue_images: int,
        executor: Executor | None,
        observer: BatchObserver | None = None,
        item_shape: tuple[int, ...] | None = None,
        item_dtype: np.dtype | None = None,
        inline_max_items: int = 0,
        adaptive_window_s: float = 0.0,
        max_concurrent_batches: int = 1,
        slots: DeviceSlots | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_batch_size < 1 or max_queue_images < 1 or batch_timeout_s < 0:
            raise ValueError("max_batch_size and max_queue_images must be >= 1, batch_timeout_s >= 0")
        self._predict_fn = predict_fn
        self.max_batch_size = max_batch_size
        self.batch_timeout_s = batch_timeout_s
        self.max_queue_images = max_queue_images
        self._executor = executor
        self.inline_max_items = inline_max_items
        self.slots = slots if slots is not None else DeviceSlots(max_concurrent_batches)  # (alone: its own)
        self._lane = self.slots.lane()
        self._running = 0  # our batches holding a slot (computing, or retrying one by one)
        self._retries: set[asyncio.Task] = set()
        self.adaptive_window_s = adaptive_window_s
        self._mean_gap = math.inf  # between arrivals (moving average), for the adaptive wait
        self._last_arrival = -math.inf
        self._waiting_for_company = False
        self._company_found = 1.0  # moving share of adaptive waits that found company
        self._dispatches = 0
        self.waits_for_company = 0  # how often a first request waited (adaptive or fixed)
        self._observer = observer or BatchObserver()
        self._item_shape = item_shape
        self._item_dtype = np.dtype(item_dtype) if item_dtype is not None else None
        self._clock = clock
        self._queue: deque[_Pending] = deque()
        self._queued_images = 0
        self._inflight: set[_Pending] = set()  # requests of the batches being computed
        self._wakeup = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task | None = None

    @property
    def queued_images(self) -> int:
        return self._queued_images

    @property
    def closed(self) -> bool:
        return self._closed

    async def submit(self, items: np.ndarray, deadline: float | None = None) -> Any:
        """Outputs for `items` (same leading length). Raises Overloaded when the queue is full,
        DeadlineExceeded when `deadline` (on `clock`) passes before compute, BatcherClosed after close()."""
        count = self._check_items(items)
        if self._closed:
            raise BatcherClosed()
        if self._queued_images + count > self.max_queue_images:
            self._observer.dropped("queue_full")
            raise Overloaded(self._queued_images, count, self.max_queue_images)
        if deadline is not None and deadline <= self._clock():
            self._observer.dropped("deadline")
            raise DeadlineExceeded("before the request was queued")
        self._ensure_dispatcher()
        if count <= self.max_batch_size:
            return await self._enqueue(items, deadline)
        futures = [
            self._enqueue(items[start : start + self.max_batch_size], deadline)
            for start in range(0, count, self.max_batch_size)
        ]
        try:
            parts = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:  # one part failed or we were cancelled: drop the rest
                future.cancel()
            raise
        return concat_outputs(parts)

    async def close(self, timeout: float | None = None) -> None:
        """Stop taking requests, finish the queued ones (up to `timeout` s), settle the rest."""
        self._closed = True
        self._wakeup.set()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._settle_all(BatcherClosed())

    def _check_items(self, items: np.ndarray) -> int:
        if not isinstance(items, np.ndarray) or items.ndim < 1:
            raise TypeError(f"items must be a numpy array with a leading batch axis, got {type(items)}")
        if self._item_shape is not None and items.shape[1:] != self._item_shape:
            raise ValueError(
                f"items must have shape [N, {', '.join(map(str, self._item_shape))}], got {list(items.shape)}"
            )
        if self._item_dtype is not None and items.dtype != self._item_dtype:
            raise ValueError(f"items must have dtype {self._item_dtype}, got {items.dtype}")
        if len(items) == 0:
            raise ValueError("items is empty")
        return len(items)

    def _enqueue(self, items: np.ndarray, deadline: float | None) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        now = self._clock()
        gap = now - self._last_arrival
        self._mean_gap = gap if self._mean_gap == math.inf else self._mean_gap + GAP_WEIGHT * (gap - self._mean_gap)
        self._last_arrival = now
        self._queue.append(_Pending(items, deadline, now, future))
        self._queued_images += len(items)
        self._observer.queue_depth(self._queued_images)
        if len(self._queue) == 1 or self._queued_images >= self.max_batch_size or self._waiting_for_company:
            self._wakeup.set()  # only the transitions the dispatcher waits for
        return future

    def _ensure_dispatcher(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._dispatch(), name="batcher")

    async def _dispatch(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closed and not self._running:
                        return
                    self._wakeup.clear()  # (closed: set again when one of our batches finishes)
                    await self._wakeup.wait()
                    continue
                if self._lane.slot_free:  # the device is idle: worth waiting for company (busy: it comes)
                    await self._wait_for_company()
                if not self._lane.try_acquire():
                    await self._lane.acquire()
                batch, waits, images = self._take_batch()  # with the slot: all that came meanwhile
                if not batch:
                    self._lane.release()
                elif self._start(batch, waits, images):
                    await asyncio.sleep(0)  # computed without suspending: let the loop serve I/O between batches
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.exception("batch dispatcher failed; failing its queued requests")
            raise
        finally:
            self._settle_all(BatcherClosed() if self._closed else ModelFailure())
            for task in self._retries:
                task.cancel()

    def _company_deadline(self) -> float | None:
        """Until when the first queued request waits for company (None: not at all)."""
        first = self._queue[0].enqueued
        if self.batch_timeout_s > 0:
            return first + self.batch_timeout_s
        if self.adaptive_window_s <= 0:
            return None
        self._dispatches += 1
        if self._company_found >= COMPANY_WORTH_WAITING or self._dispatches % PROBE_EVERY == 0:
            return first + self.adaptive_window_s
        return None

    async def _wait_for_company(self) -> None:
        deadline = self._company_deadline()
        if deadline is None:
            return
        adaptive = self.batch_timeout_s <= 0
        loop = asyncio.get_running_loop()
        queued = len(self._queue)
        self.waits_for_company += 1
        self._waiting_for_company = True  # every arrival wakes the dispatcher meanwhile
        try:
            while not self._closed and self._queued_images < self.max_batch_size:
                end = min(deadline, self._last_arrival + 2 * self._mean_gap) if adaptive else deadline
                remaining = end - self._clock()
                if remaining <= 0:
                    return
                self._wakeup.clear()
                timer = loop.call_later(remaining, self._wakeup.set)
                try:
                    await self._wakeup.wait()
                finally:
                    timer.cancel()
        finally:
            self._waiting_for_company = False
            found = 1.0 if len(self._queue) > queued else 0.0
            self._company_found += COMPANY_WEIGHT * (found - self._company_found)

    def _take_batch(self) -> tuple[list[_Pending], list[float], int]:
        batch: list[_Pending] = []
        images = 0
        now = self._clock()
        while self._queue and images + self._queue[0].size <= self.max_batch_size:
            pending = self._queue.popleft()
            self._queued_images -= pending.size
            if pending.deadline is not None and pending.deadline <= now:
                if not pending.future.done():
                    pending.future.set_exception(DeadlineExceeded("while waiting in the batch queue"))
                self._observer.dropped("deadline")
            elif pending.future.done():  # the caller gave up (cancelled): no compute for it
                self._observer.dropped("cancelled")
            else:
                batch.append(pending)
                images += pending.size
        self._observer.queue_depth(self._queued_images)
        waits = [now - pending.enqueued for pending in batch]
        if batch:
            self._observer.batch_started(images, waits)
        return batch, waits, images

    def _start(self, batch: list[_Pending], waits: list[float], images: int) -> bool:
        """Computes `batch` (its slot held) on this thread if small, else on a model worker thread;
        the slot is released when the model call has returned. True if computed here."""
        parts = [pending.items for pending in batch]
        self._running += 1
        self._inflight.update(batch)
        if images <= self.inline_max_items:
            self._finish(batch, waits, images, run_model(self._predict_fn, parts))
            return True
        future = asyncio.get_running_loop().run_in_executor(self._executor, run_model, self._predict_fn, parts)
        # (when the thread returns, even after a close() that gave up on it: the slot is that thread)
        future.add_done_callback(lambda done: self._finish(batch, waits, images, worker_result(done)))
        return False

    def _finish(self, batch: list[_Pending], waits: list[float], images: int, result: tuple) -> None:
        outputs, exc, compute_s = result
        self._observer.batch_finished(images, compute_s, exc is None, waits)
        if exc is None:
            offset = 0
            for pending in batch:
                if not pending.future.done():  # (done: the caller gave up, or close() settled it)
                    pending.future.set_result(slice_outputs(outputs, offset, offset + pending.size))
                offset += pending.size
        elif len(batch) == 1:
            self._fail(batch[0], exc, images)
        else:  # find the request that breaks the model: the others must not fail with it
            log.warning("model failed on a batch of %d requests; retrying them one by one", len(batch))
            task = asyncio.get_running_loop().create_task(self._retry_alone(batch), name="batch-retry")
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
            return  # the retries keep the slot
        self._batch_done(batch)

    async def _retry_alone(self, batch: list[_Pending]) -> None:
        try:
            for pending in batch:
                if pending.future.done():
                    continue
                outputs, exc, compute_s = (
                    run_model(self._predict_fn, [pending.items])
                    if pending.size <= self.inline_max_items
                    else await asyncio.get_running_loop().run_in_executor(
                        self._executor, run_model, self._predict_fn, [pending.items]
                    )
                )
                self._observer.batch_finished(pending.size, compute_s, exc is None, None)
                if exc is not None:
                    self._fail(pending, exc, pending.size)
                elif not pending.future.done():
                    pending.future.set_result(outputs)
        finally:
            self._batch_done(batch)

    def _batch_done(self, batch: list[_Pending]) -> None:
        self._inflight.difference_update(batch)
        self._running -= 1
        self._lane.release()
        if self._closed:
            self._wakeup.set()  # a closing dispatcher waits for its last batch

    def _fail(self, pending: _Pending, exc: Exception, images: int) -> None:
        if not isinstance(exc, ServingError):
            log.error("model failed on %d images", images, exc_info=exc)
            exc = ModelFailure()
        if not pending.future.done():
            pending.future.set_exception(exc)

    def _settle_all(self, exc: BaseException) -> None:
        """Every future still waiting gets `exc`: nobody waits forever."""
        for pending in [*self._inflight, *self._queue]:
            if not pending.future.done():
                pending.future.set_exception(exc)
        self._inflight.clear()
        self._queue.clear()
        self._queued_images = 0
