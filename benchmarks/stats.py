"""Small statistics shared by the harness: latency percentiles, medians of rounds, spread."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

import numpy as np


def latency_summary(latencies_s: Sequence[float]) -> dict:
    """Per-call latencies in seconds -> p50/p99/mean in milliseconds."""
    if not latencies_s:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None}
    values = np.asarray(latencies_s) * 1e3
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
    }


def median_of(rounds: Iterable[dict], key: str) -> float | None:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(values) if values else None


def spread_of(rounds: Iterable[dict], key: str) -> float | None:
    """(max - min) / median across rounds: how far to trust the median."""
    values = [r[key] for r in rounds if r.get(key) is not None]
    if len(values) < 2:
        return None
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else None


def combine_rounds(rounds: list[dict], keys: Sequence[str]) -> dict:
    """Median of each key over rounds, plus the relative spread of throughput."""
    combined = {key: median_of(rounds, key) for key in keys}
    combined["rounds"] = len(rounds)
    combined["spread"] = spread_of(rounds, "images_per_s")
    return combined


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator
