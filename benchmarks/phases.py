"""The measuring phases of one run. Each returns plain JSON-able data for the report."""

from __future__ import annotations

import random
import statistics
import threading
import time

import numpy as np

from benchmarks import triton_load
from benchmarks.load import OPEN_LOOP_MAX_IN_FLIGHT, Point, measure_server, sweep_rates
from benchmarks.plan import ComputeRuntime, Plan, points_for
from benchmarks.processes import ServerProcess
from benchmarks.workers import ComputeWorker

RSS_SAMPLE_INTERVAL_S = 5.0
SOAK_POINT = Point(64, 1)
SOAK_SETTLE_FRACTION = 0.2  # memory before this share of the soak is warm-up (pools, caches)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def closed_loop(
    servers: list[ServerProcess], compute: ComputeWorker, runtimes: list[ComputeRuntime], plan: Plan
) -> tuple[dict, dict]:
    """All configurations, round after round; within a round the order is shuffled so slow
    drifts in background load fall on every configuration alike. Each round starts with the
    compute ceiling of every runtime at every batch."""
    shuffle = random.Random(7).shuffle
    compute_rounds: dict[str, dict[str, list]] = {
        r.label: {f"b{b}": [] for b in plan.compute_batches} for r in runtimes
    }
    closed: dict[str, dict[str, list]] = {s.spec.label: {} for s in servers}
    for round_index in range(plan.rounds):
        for runtime in runtimes:
            for batch in plan.compute_batches:
                sample = compute.measure(runtime, batch, plan.compute_seconds)
                compute_rounds[runtime.label][f"b{batch}"].append({**sample, "round": round_index})
        for point in plan.closed_points():
            subjects = [s for s in servers if point in points_for(s.spec, plan)]
            shuffle(subjects)
            for server in subjects:
                sample = measure_server(server, point, plan.seconds, plan.warmup)
                closed[server.spec.label].setdefault(point.key, []).append({**sample, "round": round_index})
        log(f"closed loop: round {round_index + 1}/{plan.rounds} done")
    return compute_rounds, closed


def gil_contention(compute: ComputeWorker, tensorflow: ComputeRuntime, plan: Plan) -> dict:
    """TensorFlow's compute-ceiling calls again, alone and next to a thread running pure Python:
    how much a model call slows when its thread must win the GIL back (as in a server process)."""
    results: dict = {}
    for _ in range(plan.rounds):
        for batch in plan.gil_batches:
            for busy in (False, True):
                sample = compute.measure(tensorflow, batch, plan.compute_seconds, busy_python_thread=busy)
                results.setdefault(f"b{batch}", {}).setdefault("busy" if busy else "alone", []).append(sample)
    log("GIL contention measured")
    return results


def rate_sweep(servers: list[ServerProcess], closed: dict, plan: Plan, batch: int = 1) -> dict:
    """Open loop at rising rates, as fractions of each server's closed-loop maximum."""
    sweeps = {}
    top_concurrency = max(plan.concurrencies)
    for server in servers:
        rounds = closed[server.spec.label].get(Point(top_concurrency, batch).key, [])
        saturation = statistics.median(r["requests_per_s"] for r in rounds) if rounds else 100.0
        samples = []
        for rate in sweep_rates(saturation, plan.sweep_fractions):
            point = Point(OPEN_LOOP_MAX_IN_FLIGHT, batch, rate=rate)
            samples.append({"rate": rate, **measure_server(server, point, plan.sweep_seconds, plan.warmup)})
        sweeps[server.spec.label] = samples
        log(f"rate sweep: {server.spec.label} done")
    return sweeps


def perf_analyzer(server: ServerProcess, closed: dict, plan: Plan) -> dict:
    """perf_analyzer at every closed-loop point, sized to last about as long as our own runs."""
    samples = {}
    for point in plan.closed_points():
        rounds = closed[server.spec.label].get(point.key, [])
        rate = statistics.median(r["requests_per_s"] for r in rounds) if rounds else 0.0
        sample = triton_load.measure(server, point, int(rate * plan.seconds))
        if sample.get("timed_out"):  # perf_analyzer now and then hangs after its last request: once more
            sample = triton_load.measure(server, point, int(rate * plan.seconds))
        samples[point.key] = sample
    failed = [k for k, v in samples.items() if "error" in v]
    log(f"perf_analyzer: {len(samples) - len(failed)} points measured" + (f", failed at {failed}" if failed else ""))
    return samples


class RssSampler:
    """Samples a process's resident memory every few seconds in a background thread."""

    def __init__(self, server: ServerProcess, interval: float = RSS_SAMPLE_INTERVAL_S):
        self.server, self.interval = server, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while True:
            self.samples.append((time.monotonic() - start, self.server.rss_bytes()))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def soak(server: ServerProcess, plan: Plan) -> dict:
    """Full load for soak_windows x soak_window_seconds; memory and throughput over time."""
    windows = []
    interval = min(RSS_SAMPLE_INTERVAL_S, plan.soak_windows * plan.soak_window_seconds / 20)
    with RssSampler(server, interval) as sampler:
        for _ in range(plan.soak_windows):
            windows.append(measure_server(server, SOAK_POINT, plan.soak_window_seconds, plan.warmup))
    result = {
        "point": SOAK_POINT.key,
        "windows": windows,
        "rss_samples": [{"t_s": t, "rss_mb": rss / 2**20} for t, rss in sampler.samples],
        **memory_trend(sampler.samples),
    }
    if result["growth_pct"] is not None:
        log(
            f"soak: RSS {result['rss_settled_mb']:.0f} -> {result['rss_end_mb']:.0f} MB, "
            f"slope {result['slope_mb_per_min']:+.2f} MB/min"
        )
    return result


def memory_trend(samples: list[tuple[float, int]]) -> dict:
    """Growth of resident memory after the warm-up share: least-squares slope and end-to-end."""
    if len(samples) < 3:
        return {"rss_settled_mb": None, "rss_end_mb": None, "slope_mb_per_min": None, "growth_pct": None}
    settled = [s for s in samples if s[0] >= samples[-1][0] * SOAK_SETTLE_FRACTION] or samples
    t = np.array([s[0] for s in settled]) / 60.0
    mb = np.array([s[1] for s in settled]) / 2**20
    slope = float(np.polyfit(t, mb, 1)[0]) if len(settled) >= 2 and np.ptp(t) > 0 else 0.0
    return {
        "rss_settled_mb": float(mb[0]),
        "rss_end_mb": float(mb[-1]),
        "rss_max_mb": float(mb.max()),
        "slope_mb_per_min": slope,
        "settled_minutes": float(np.ptp(t)),
        "growth_pct": float(100 * (mb[-1] - mb[0]) / mb[0]),
    }
