"""One measurement: drive a server with `mnist-client bench` (or the compute worker) and
return a flat sample: images/s, latency percentiles, and the CPU both sides used."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.processes import REPO_ROOT, ServerProcess
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


def measure_server(server: ServerProcess, point: Point, seconds: float, warmup: float,
                   processes: int = 1) -> dict:
    """Runs the load tester against `server` at `point`; adds the server's CPU use meanwhile."""
    config = BenchConfig(server.target, concurrency=point.concurrency, batch=point.batch,
                         rate=point.rate, duration=seconds, warmup=warmup,
                         processes=min(processes, point.concurrency),
                         timeout=REQUEST_TIMEOUT_S)
    batching_before = server.batching_counters()
    cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
    result = run_bench(config, IMAGES, progress=None)
    elapsed = time.monotonic() - wall_before
    server_cores = (server.cpu_seconds() - cpu_before) / elapsed
    batching = batching_summary(batching_before, server.batching_counters(), elapsed)
    latency = result["latency_ms"]
    return {
        "images_per_s": result["images_per_s"],
        "requests_per_s": result["requests_per_s"],
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "ok": result["requests"]["ok"],
        "failed": result["requests"]["failed"],
        "errors": result["errors"],
        "client_cpu_us_per_request": result["client_cpu_us_per_request"],
        # Includes the warm-up and worker start, so a slight underestimate of the load-time use.
        "server_cores": server_cores,
        **batching,
    }


def batching_summary(before: dict | None, after: dict | None, elapsed: float) -> dict:
    """Mean batch size, mean queue wait and the share of time the model computed, during a run
    (warm-up included)."""
    if before is None or after is None:
        return {}
    delta = {key: after[key] - before[key] for key in after}
    batches, waits = delta["batch_size_count"], delta["queue_wait_seconds_count"]
    return {"mean_batch": delta["batch_size_sum"] / batches if batches else None,
            "mean_queue_wait_ms": 1e3 * delta["queue_wait_seconds_sum"] / waits if waits else None,
            "model_busy": delta["compute_seconds_sum"] / elapsed,
            # a model call in the server, against the same call alone (compute ceiling): GIL contention shows here
            "mean_call_ms": 1e3 * delta["compute_seconds_sum"] / batches if batches else None}


class ComputeWorker:
    """`benchmarks.compute_ceiling` as a child process answering one measurement per line."""

    def __init__(self, model_dir, log_path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.compute_ceiling", "--model-dir", str(model_dir)],
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        hello = self._read()
        if not hello.get("ready"):
            raise RuntimeError(f"compute worker did not start; see {log_path}")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"compute worker exited with {self.proc.poll()}; see {self.log.name}")
        return json.loads(line)

    def measure(self, batch: int, seconds: float, busy_python_thread: bool = False) -> dict:
        self.proc.stdin.write(json.dumps({"batch": batch, "seconds": seconds,
                                          "busy_python_thread": busy_python_thread}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the worker's loop ends at end of input
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def sweep_rates(saturation_rps: float, fractions: tuple[float, ...]) -> list[float]:
    """Open-loop request rates as fractions of a server's measured closed-loop maximum."""
    return [float(np.round(saturation_rps * f, -1) or 10.0) for f in fractions]
