"""Run a load test across worker processes, with live progress, and merge the result.

Workers are spawned processes (one asyncio loop each) so the load generator is not held
to one core by the GIL; they start together on a shared monotonic start time.
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
import time
from typing import Any, TextIO

import numpy as np

from mnist_client.bench import worker
from mnist_client.bench.config import BenchConfig, build_payloads, plans
from mnist_client.bench.recorder import ERRORS, OK
from mnist_client.bench.report import summarize

SPAWN_TIMEOUT_S = 60.0  # plus the connection timeout
PROGRESS_INTERVAL_S = 1.0
START_DELAY_S = 0.05


class BenchError(RuntimeError):
    """The load run could not be carried out (no connection, a worker crashed)."""


def run_bench(config: BenchConfig, images: np.ndarray, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Runs ``config`` with requests cut from ``images`` (uint8 [N, 28, 28]); returns the result dict."""
    payloads = build_payloads(images, config.batch, config.encoding, config.model)
    context = multiprocessing.get_context("spawn")  # gRPC does not survive fork
    ready, results = context.Queue(), context.Queue()
    go = context.Event()
    start_at = context.Value("d", 0.0, lock=False)
    counters = context.RawArray("q", 2 * config.processes)
    processes = [
        context.Process(
            target=worker.main,
            daemon=True,
            name=f"bench-worker-{p.index}",
            args=(p, ready, go, start_at, counters, results),
        )
        for p in plans(config, payloads)
    ]
    for process in processes:
        process.start()
    try:
        _wait_ready(ready, processes, SPAWN_TIMEOUT_S + config.timeout)
        start_at.value = time.monotonic() + START_DELAY_S
        go.set()
        collected = _collect(results, processes, config, start_at.value, counters, progress)
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join()
    failures = [r["failure"] for r in collected if "failure" in r]
    if failures:
        raise BenchError("; ".join(sorted(set(failures))))
    return summarize(config, collected)


def _wait_ready(ready: Any, processes: list, timeout: float) -> None:
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < len(processes):
        try:
            seen.add(ready.get(timeout=PROGRESS_INTERVAL_S))
        except queue.Empty:
            _check_alive(processes, seen)
            if time.monotonic() > deadline:
                raise BenchError(f"{len(processes) - len(seen)} worker(s) not ready after {timeout:.0f} s") from None


def _check_alive(processes: list, done: set[int]) -> None:
    for index, process in enumerate(processes):
        if index not in done and process.exitcode is not None:
            raise BenchError(
                f"worker {index} exited with code {process.exitcode} "
                "(scripts using run_bench need an `if __name__ == '__main__':` guard)"
            )


def _collect(
    results: Any, processes: list, config: BenchConfig, start: float, counters: Any, progress: TextIO | None
) -> list[dict]:
    limit = _time_limit(config)
    collected: list[dict] = []
    last_ok, last_time = 0, time.monotonic()
    while len(collected) < len(processes):
        try:
            collected.append(results.get(timeout=PROGRESS_INTERVAL_S))
        except queue.Empty:
            _check_alive(processes, {r["index"] for r in collected})
        now = time.monotonic()
        if now - start > limit:
            raise BenchError(f"workers did not finish within {limit:.0f} s")
        if progress is not None and now - last_time >= PROGRESS_INTERVAL_S:
            ok = sum(counters[2 * i + OK] for i in range(config.processes))
            failed = sum(counters[2 * i + ERRORS] for i in range(config.processes))
            phase = "warm-up" if now - start < config.warmup else "measuring"
            progress.write(
                f"[{now - start:6.1f} s] {phase:9s} {ok} ok, {failed} failed, "
                f"{(ok - last_ok) / (now - last_time):.0f} req/s\n"
            )
            progress.flush()
            last_ok, last_time = ok, now
    return collected


def _time_limit(config: BenchConfig) -> float:
    """How long the workers may take before the run is declared stuck."""
    if config.duration is not None:
        return config.warmup + config.duration + 2 * config.timeout + 10
    return config.warmup + (config.requests or 0) * config.timeout + 10
