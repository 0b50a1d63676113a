"""Merge the workers' measurements into one result, and print it for people."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

import numpy as np

from mnist_client.bench.config import BenchConfig

PERCENTILES = (50, 90, 99)


def summarize(config: BenchConfig, workers: list[dict]) -> dict[str, Any]:
    """The run's result: the JSON that ``--json FILE`` writes."""
    latencies = (
        np.concatenate([np.frombuffer(w["latencies"], dtype=np.float64) for w in workers]) if workers else np.empty(0)
    )
    errors: Counter = Counter()
    for worker in workers:
        errors.update(worker["errors"])
    ok = int(latencies.size)
    failed = sum(errors.values())
    window_start = min((w["warm_end"] for w in workers), default=0.0)
    window_end = max((w["last_end"] for w in workers), default=0.0)
    elapsed = window_end - window_start if window_end > window_start else 0.0
    sent = sum(w["sent"] for w in workers)
    cpu_s = sum(w["cpu_s"] for w in workers)
    settings = {k: v for k, v in asdict(config).items() if k not in ("tls", "token")}
    return {
        "config": {**settings, "mode": config.mode, "tls": config.tls is not None},
        "requests": {"ok": ok, "failed": failed, "total": ok + failed},
        "errors": dict(sorted(errors.items())),
        "elapsed_s": elapsed,
        "requests_per_s": ok / elapsed if elapsed else 0.0,
        "images_per_s": ok * config.batch / elapsed if elapsed else 0.0,
        "latency_ms": _latency_ms(latencies),
        "client_cpu_s": cpu_s,
        "client_cpu_us_per_request": cpu_s / sent * 1e6 if sent else None,
    }


def _latency_ms(latencies: np.ndarray) -> dict[str, float | None]:
    names = [f"p{p}" for p in PERCENTILES] + ["max", "mean"]
    if latencies.size == 0:
        return dict.fromkeys(names)
    values = np.percentile(latencies, PERCENTILES) * 1e3
    result: dict[str, float | None] = {name: float(v) for name, v in zip(names, values)}
    result["max"] = float(latencies.max() * 1e3)
    result["mean"] = float(latencies.mean() * 1e3)
    return result


def format_result(result: dict[str, Any]) -> str:
    """A short human-readable report of ``summarize``'s result."""
    config, requests, lat = result["config"], result["requests"], result["latency_ms"]
    load = (
        f"open loop at {config['rate']:g} req/s (max {config['concurrency']} in flight)"
        if config["mode"] == "open"
        else f"closed loop, concurrency {config['concurrency']}"
    )
    lines = [
        f"target      {config['target']}  ({'stream' if config['stream'] else 'unary'}, {load}, "
        f"batch {config['batch']}, {config['processes']} process(es))",
        f"requests    {requests['ok']} ok, {requests['failed']} failed in {result['elapsed_s']:.2f} s",
        f"throughput  {result['requests_per_s']:.1f} requests/s, {result['images_per_s']:.1f} images/s",
    ]
    if lat["p50"] is not None:
        lines.append(
            f"latency     p50 {lat['p50']:.2f} ms  p90 {lat['p90']:.2f} ms  "
            f"p99 {lat['p99']:.2f} ms  max {lat['max']:.2f} ms"
        )
    if result["errors"]:
        lines.append("errors      " + ", ".join(f"{code} {n}" for code, n in result["errors"].items()))
    if result["client_cpu_us_per_request"] is not None:
        lines.append(f"client CPU  {result['client_cpu_us_per_request']:.0f} us per request")
    return "\n".join(lines)
