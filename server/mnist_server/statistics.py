"""Per-version inference statistics in Triton's terms, fed by the batcher's observer hooks.

KServe v2's ModelStatistics (what `perf_analyzer` reads for its server-side breakdown) needs
cumulative counts and durations per model version; Prometheus keeps distributions per model. So
each version's batcher also reports here (app wires a tee). Triton's meanings:
  success / fail      requests, with their time in the server (queue wait + compute of their batch)
  queue               requests, with their wait for a batch
  compute_infer       requests, each with the compute time of the batch it rode in
  compute_input/output  the same counts (perf_analyzer requires equal counts); their time is
                      inside compute_infer here, so it is 0
  inference_count     images classified; execution_count: model calls
  batch_stats         per batch size: model calls and their compute time
Everything runs on the event loop thread (where the batcher calls its observer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .batcher import BatchObserver


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, count: int, ns: int) -> None:
        self.count += count
        self.ns += ns


@dataclass
class VersionStatistics(BatchObserver):
    wall_clock: Callable[[], float] = field(default=time.time, repr=False)
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    batches: dict[int, Duration] = field(default_factory=dict)  # batch size -> calls, compute time

    def batch_started(self, images: int, queue_waits_s: list[float]) -> None:
        self.queue.add(len(queue_waits_s), sum(_ns(w) for w in queue_waits_s))

    def batch_finished(self, images: int, compute_s: float, ok: bool, queue_waits_s: list[float] | None = None) -> None:
        # A batch that fails with several requests is retried request by request (batcher);
        # those retries arrive here without waits and settle the requests one by one.
        waits = queue_waits_s
        compute_ns = _ns(compute_s)
        self.batches.setdefault(images, Duration()).add(1, compute_ns)
        if not ok and waits is not None and len(waits) > 1:
            return  # each request is counted by its own retry
        waits = waits if waits is not None else [0.0]
        self.compute_infer.add(len(waits), compute_ns * len(waits))
        in_server_ns = sum(_ns(w) for w in waits) + compute_ns * len(waits)
        if ok:
            self.success.add(len(waits), in_server_ns)
            self.inference_count += images
            self.execution_count += 1
            self.last_inference_ms = int(self.wall_clock() * 1000)
        else:
            self.fail.add(len(waits), in_server_ns)

    def dropped(self, reason: str, requests: int = 1) -> None:
        self.fail.add(requests, 0)  # refused or expired before compute


class _Tee(BatchObserver):
    def __init__(self, *observers: BatchObserver):
        self._observers = observers

    def queue_depth(self, images: int) -> None:
        for observer in self._observers:
            observer.queue_depth(images)

    def batch_started(self, images: int, queue_waits_s: list[float]) -> None:
        for observer in self._observers:
            observer.batch_started(images, queue_waits_s)

    def batch_finished(self, images: int, compute_s: float, ok: bool, queue_waits_s: list[float] | None = None) -> None:
        for observer in self._observers:
            observer.batch_finished(images, compute_s, ok, queue_waits_s)

    def dropped(self, reason: str, requests: int = 1) -> None:
        for observer in self._observers:
            observer.dropped(reason, requests)


class StatisticsBook:
    """Statistics of every version a batcher was made for, by (model, version)."""

    def __init__(self, wall_clock: Callable[[], float] = time.time):
        self._wall_clock = wall_clock
        self._versions: dict[tuple[str, int], VersionStatistics] = {}

    def observer(self, model: str, version: int, *also: BatchObserver) -> BatchObserver:
        """A fresh record for (model, version) (a reload starts from zero), teed with `also`."""
        statistics = VersionStatistics(wall_clock=self._wall_clock)
        self._versions[(model, version)] = statistics
        return _Tee(statistics, *also)

    def get(self, model: str, version: int) -> VersionStatistics:
        return self._versions.get((model, version)) or VersionStatistics(wall_clock=self._wall_clock)
