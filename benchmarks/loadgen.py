"""What the harness's own Python load generators (tfserving_load.py, rest_load.py) share: they send
to this machine only, report one result shape, and run as JSON-lines worker processes
(workers.LineWorker) so their CPU is counted apart from the harness's. No TensorFlow or gRPC here:
a generator that needs neither imports neither."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from benchmarks.stats import latency_summary


def check_loopback(target: str) -> None:
    """`target` is HOST:PORT (an IPv6 host in brackets); raises ValueError unless HOST is loopback."""
    host = target.rsplit(":", 1)[0].strip("[]")
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"{target}: this load generator sends to loopback addresses only")


def closed_loop_result(
    latencies: list[float], errors: Counter, sent: int, elapsed: float, batch: int, cpu_s: float
) -> dict:
    """A run's sample, shaped like load.measure_server's: `latencies` (seconds) and `errors` of the
    measured window, `sent` every request including warm-up, `cpu_s` the generator's own CPU."""
    ok = len(latencies)
    summary = latency_summary(latencies)
    return {
        "images_per_s": ok * batch / elapsed if elapsed > 0 else 0.0,
        "requests_per_s": ok / elapsed if elapsed > 0 else 0.0,
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "ok": ok,
        "failed": sum(errors.values()),
        "errors": dict(errors),
        "requests": sent,
        "client_cpu_us_per_request": cpu_s / sent * 1e6 if sent else None,
    }


MAX_REQUESTS_PER_RUN = 2_000_000


async def run_closed_loop(
    send: Callable[[int], Awaitable[str | None]], concurrency: int, batch: int, seconds: float, warmup: float
) -> dict:
    """`concurrency` callers, each sending its next request when the last one answered, for
    warmup + seconds (only the last `seconds` measured) or MAX_REQUESTS_PER_RUN requests.
    `send(k)` sends request number k and returns None on success, else what went wrong."""
    latencies: list[float] = []
    errors: Counter = Counter()
    sent = 0
    start = time.monotonic()
    warm_end, end = start + warmup, start + warmup + seconds
    last_end = warm_end

    async def caller(k: int) -> None:
        nonlocal sent, last_end
        while (sent_at := time.monotonic()) < end and sent < MAX_REQUESTS_PER_RUN:
            sent += 1
            error = await send(k)
            k += concurrency
            if sent_at < warm_end:
                continue
            last_end = max(last_end, time.monotonic())
            if error is None:
                latencies.append(last_end - sent_at)
            else:
                errors[error] += 1

    cpu_start = time.process_time()
    await asyncio.gather(*(caller(k) for k in range(concurrency)))
    cpu_s = time.process_time() - cpu_start
    return closed_loop_result(latencies, errors, sent, last_end - warm_end, batch, cpu_s)


def serve_stdin(run: Callable[[dict], Coroutine[Any, Any, dict]]) -> None:
    """The worker loop: one JSON command per stdin line -> one JSON result per stdout line, until
    stdin closes. A failed run is reported as {"error": ...} and the worker goes on."""
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            result = asyncio.run(run(json.loads(line)))
        except Exception as exc:  # reported in the results, the run goes on
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)
