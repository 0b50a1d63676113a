"""One measurement: drive a server with `mnist-client bench` and return a flat sample:
images/s, latency percentiles, and the CPU both sides used."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.processes import ServerProcess
from mnist_client.bench import BenchConfig, random_digits, run_bench

IMAGES = random_digits()
OPEN_LOOP_MAX_IN_FLIGHT = 256
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Point:
    """One load shape: closed loop at `concurrency`, or open loop at `rate` requests/s."""

    concurrency: int
    batch: int
    rate: float | None = None

    @property
    def key(self) -> str:
        if self.rate is not None:
            return f"open r{self.rate:.0f} b{self.batch}"
        return f"c{self.concurrency} b{self.batch}"


def measure_server(server: ServerProcess, point: Point, seconds: float, warmup: float, processes: int = 1) -> dict:
    """Runs the load tester against `server` at `point`; adds the server's CPU use meanwhile."""
    config = BenchConfig(
        server.target,
        concurrency=point.concurrency,
        batch=point.batch,
        rate=point.rate,
        duration=seconds,
        warmup=warmup,
        processes=min(processes, point.concurrency),
        timeout=REQUEST_TIMEOUT_S,
    )
    batching_before = server.batching_counters()
    cpu_before = server.cpu_seconds()
    result = run_bench(config, IMAGES, progress=None)
    server_cpu = server.cpu_seconds() - cpu_before
    # The load lasted the warm-up plus the measured window; starting the load tester's worker
    # process before it (the server idle meanwhile) is left out, or short runs would look idle.
    loaded_s = warmup + result["elapsed_s"]
    batching = batching_summary(batching_before, server.batching_counters(), loaded_s)
    latency = result["latency_ms"]
    sent = requests_sent(result)
    return {
        "images_per_s": result["images_per_s"],
        "requests_per_s": result["requests_per_s"],
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "ok": result["requests"]["ok"],
        "failed": result["requests"]["failed"],
        "errors": result["errors"],
        "client_cpu_us_per_request": result["client_cpu_us_per_request"],
        "server_cores": server_cpu / loaded_s if loaded_s > 0 else None,
        # every request sent, warm-up included, against all the CPU the server used meanwhile
        "server_cpu_us_per_request": server_cpu / sent * 1e6 if sent else None,
        **batching,
    }


def requests_sent(result: dict) -> int:
    """Requests the load tester sent, warm-up included: its JSON gives the CPU it used in all and
    per request sent, not the count itself."""
    per_request = result.get("client_cpu_us_per_request")
    return round(result["client_cpu_s"] / per_request * 1e6) if per_request else 0


def batching_summary(before: dict | None, after: dict | None, elapsed: float) -> dict:
    """Mean batch size, mean queue wait and the share of time the model computed, during a run
    (warm-up included)."""
    if before is None or after is None:
        return {}
    delta = {key: after[key] - before[key] for key in after}
    batches, waits = delta["batch_size_count"], delta["queue_wait_seconds_count"]
    return {
        "mean_batch": delta["batch_size_sum"] / batches if batches else None,
        "mean_queue_wait_ms": 1e3 * delta["queue_wait_seconds_sum"] / waits if waits else None,
        "model_busy": delta["compute_seconds_sum"] / elapsed,
        # a model call in the server, against the same call alone (compute ceiling): GIL contention shows here
        "mean_call_ms": 1e3 * delta["compute_seconds_sum"] / batches if batches else None,
    }


def sweep_rates(saturation_rps: float, fractions: tuple[float, ...]) -> list[float]:
    """Open-loop request rates as fractions of a server's measured closed-loop maximum."""
    return [float(np.round(saturation_rps * f, -1) or 10.0) for f in fractions]
