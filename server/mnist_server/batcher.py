"""Dynamic batching on asyncio, knowing nothing of gRPC or TensorFlow.

Callers `await submit(items, deadline)` with an array of N items (leading axis) and get back the
outputs for exactly those N items. One dispatcher task merges queued requests into one call of
`predict_fn` (run in `executor`, so the event loop keeps serving), splits the outputs back by
offsets and settles every waiting future: with a result, an exception, or a cancellation.

Batches form in three ways: while the model computes, new requests queue up and all go together in
the next call; when the model is idle, the first request may wait a fixed `batch_timeout_s` for
company; or, with `adaptive_window_s`, it waits only where waiting has been finding company: for as
long as requests keep coming (no pause longer than two mean gaps between arrivals), at most the
window. When fewer than half of the recent waits found company (a lone client, whose next request
only comes after this answer) the batcher stops waiting, and tries once every 16 batches. A model
too fast to batch by itself (LiteRT at small batches) thus still gets full batches from many
clients, whatever their rate, and a lone client is not held (docs/benchmarks.md).

Batches of at most `inline_max_items` items are computed on the event loop's own thread: for a
model call shorter than the two thread hand-offs to the executor and back (about 100 us of CPU per
batch, measured), that is cheaper. `predict_fn` maps an array of N items to either an
array/sequence of length N or a dict of arrays each of leading length N; the lengths are checked.
When the model raises on a batch of several requests, each is retried alone, so only the one that
breaks the model fails.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .errors import BatcherClosed, DeadlineExceeded, ModelFailure, Overloaded, ServingError

log = logging.getLogger(__name__)


GAP_WEIGHT = 0.1  # of the newest gap in the moving average: about the last ten arrivals
COMPANY_WEIGHT = 0.2  # of the newest adaptive wait in the share that found company: about the last five
COMPANY_WORTH_WAITING = 0.5  # below this share the batcher stops waiting ...
PROBE_EVERY = 16  # ... except on every 16th batch, to notice when company starts coming again


class BatchObserver:
    """Hooks for metrics; the default does nothing. Called on the event loop thread."""

    def queue_depth(self, images: int) -> None: ...

    def batch_started(self, images: int, queue_waits_s: list[float]) -> None: ...

    def batch_finished(self, images: int, compute_s: float, ok: bool,
                       queue_waits_s: list[float] | None = None) -> None:
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


def output_length(outputs: Any) -> int:
    if isinstance(outputs, Mapping):
        lengths = {len(value) for value in outputs.values()}
        if len(lengths) != 1:
            raise ValueError(f"outputs have different leading lengths {sorted(lengths)}")
        return lengths.pop()
    return len(outputs)


def slice_outputs(outputs: Any, start: int, stop: int) -> Any:
    if isinstance(outputs, Mapping):
        return {name: value[start:stop] for name, value in outputs.items()}
    return outputs[start:stop]


def concat_outputs(parts: list) -> Any:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], Mapping):
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [item for part in parts for item in part]


class Batcher:
    def __init__(self, predict_fn: Callable[[np.ndarray], Any], *, max_batch_size: int,
                 batch_timeout_s: float, max_queue_images: int, executor: Executor | None,
                 observer: BatchObserver | None = None, item_shape: tuple[int, ...] | None = None,
                 item_dtype: np.dtype | None = None, inline_max_items: int = 0, adaptive_window_s: float = 0.0,
                 max_concurrent_batches: int = 1,
                 clock: Callable[[], float] = time.monotonic):
        if max_batch_size < 1 or max_queue_images < 1 or batch_timeout_s < 0:
            raise ValueError("max_batch_size and max_queue_images must be >= 1, batch_timeout_s >= 0")
        self._predict_fn = predict_fn
        self.max_batch_size = max_batch_size
        self.batch_timeout_s = batch_timeout_s
        self.max_queue_images = max_queue_images
        self._executor = executor
        self.inline_max_items = inline_max_items
        self.max_concurrent_batches = max_concurrent_batches
        self._computing: set[asyncio.Task] = set()  # batches in the executor (max_concurrent_batches > 1)
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
        futures = [self._enqueue(items[start:start + self.max_batch_size], deadline)
                   for start in range(0, count, self.max_batch_size)]
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
            except asyncio.TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._settle_all(BatcherClosed())

    def _check_items(self, items: np.ndarray) -> int:
        if not isinstance(items, np.ndarray) or items.ndim < 1:
            raise TypeError(f"items must be a numpy array with a leading batch axis, got {type(items)}")
        if self._item_shape is not None and items.shape[1:] != self._item_shape:
            raise ValueError(f"items must have shape [N, {', '.join(map(str, self._item_shape))}], "
                             f"got {list(items.shape)}")
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
                    if self._closed:
                        await asyncio.gather(*self._computing)
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if len(self._computing) >= self.max_concurrent_batches:
                    await asyncio.wait(self._computing, return_when=asyncio.FIRST_COMPLETED)
                    continue
                await self._wait_for_company()
                batch, waits = self._take_batch()
                if not batch:
                    continue
                if self._batch_images(batch) <= self.inline_max_items:
                    await self._compute(batch, waits)
                    await asyncio.sleep(0)  # computed without suspending: let the loop serve I/O between batches
                elif self.max_concurrent_batches == 1:
                    await self._compute(batch, waits)
                else:  # the next batch may form and start while this one computes
                    task = asyncio.get_running_loop().create_task(self._compute(batch, waits), name="batch")
                    self._computing.add(task)
                    task.add_done_callback(self._computing.discard)
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.exception("batch dispatcher failed; failing its queued requests")
            raise
        finally:
            self._settle_all(BatcherClosed() if self._closed else ModelFailure())
            for task in self._computing:
                task.cancel()

    @staticmethod
    def _batch_images(batch: list[_Pending]) -> int:
        return sum(pending.size for pending in batch)

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

    def _take_batch(self) -> tuple[list[_Pending], list[float]]:
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
        return batch, waits

    async def _compute(self, batch: list[_Pending], waits: list[float]) -> None:
        self._inflight.update(batch)
        inputs = batch[0].items if len(batch) == 1 else np.concatenate([p.items for p in batch])
        try:
            outputs = await self._call_model(inputs, waits)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc, len(inputs))
            else:  # find the request that breaks the model: the others must not fail with it
                log.warning("model failed on a batch of %d requests; retrying them one by one", len(batch))
                for pending in batch:
                    if pending.future.done():
                        continue
                    try:
                        alone = await self._call_model(pending.items, None)
                    except Exception as exc_alone:
                        self._fail(pending, exc_alone, pending.size)
                    else:
                        pending.future.set_result(alone)
            self._inflight.difference_update(batch)
            return
        # (on cancellation `_inflight` stays set so the dispatcher's `finally` settles it)
        offset = 0
        for pending in batch:
            if not pending.future.done():
                pending.future.set_result(slice_outputs(outputs, offset, offset + pending.size))
            offset += pending.size
        self._inflight.difference_update(batch)

    async def _call_model(self, inputs: np.ndarray, waits: list[float] | None) -> Any:
        """predict_fn in the executor, outputs' length checked; observed either way."""
        started = time.perf_counter()
        ok = False
        try:
            if len(inputs) <= self.inline_max_items:
                outputs = self._predict_fn(inputs)
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._predict_fn, inputs)
            if output_length(outputs) != len(inputs):
                raise ValueError(f"predict returned {output_length(outputs)} results for {len(inputs)} items")
            ok = True
            return outputs
        finally:
            self._observer.batch_finished(len(inputs), time.perf_counter() - started, ok, waits)

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
