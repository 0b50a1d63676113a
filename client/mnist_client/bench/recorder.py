"""Per-worker bookkeeping: which requests are measured, their latencies and error codes."""

from __future__ import annotations

import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import grpc

OK, ERRORS = 0, 1  # offsets of a worker's two slots in the shared progress counters


@dataclass
class Recorder:
    """Requests scheduled before ``warm_end`` run but are not measured. The run stops issuing
    at ``end`` (duration mode) or after ``quota`` measured requests (count mode)."""

    warm_end: float
    end: float | None
    quota: int | None
    counters: Any  # shared array, two slots per worker: read by the parent for live progress
    slot: int
    latencies: array = field(default_factory=lambda: array("d"))
    errors: Counter = field(default_factory=Counter)
    started: int = 0  # measured requests issued
    sent: int = 0  # all requests issued, warm-up included
    last_end: float = 0.0

    def may_send(self, when: float) -> bool:
        if self.end is not None:
            return when < self.end
        return when < self.warm_end or (self.quota is not None and self.started < self.quota)

    def begin(self, when: float) -> bool:
        """Counts a request scheduled at ``when``; True when it is measured."""
        self.sent += 1
        measured = when >= self.warm_end
        if measured:
            self.started += 1
        return measured

    def finish(self, measured: bool, scheduled: float, code: grpc.StatusCode) -> None:
        now = time.monotonic()
        self.counters[2 * self.slot + (OK if code is grpc.StatusCode.OK else ERRORS)] += 1
        if not measured:
            return
        self.last_end = max(self.last_end, now)
        if code is grpc.StatusCode.OK:
            self.latencies.append(now - scheduled)
        else:
            self.errors[code.name] += 1

    def result(self) -> dict:
        return {
            "latencies": self.latencies.tobytes(),
            "errors": dict(self.errors),
            "measured": self.started,
            "sent": self.sent,
            "last_end": self.last_end,
            "warm_end": self.warm_end,
        }
