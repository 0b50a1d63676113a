"""Reading a run's JSON: a configuration's rounds at a point, the compute ceiling per runtime,
and ratios paired by round (ours in round k over the reference in round k, measured minutes
apart; the median of those ratios is reported with their range)."""

from __future__ import annotations

import statistics
from collections.abc import Callable

Metric = str | Callable[[dict], float | None]


def labels(results: dict) -> dict[str, str]:
    """kind -> label of the first server of that kind (the default `ours`)."""
    found: dict[str, str] = {}
    for label, info in results["servers"].items():
        found.setdefault(info["kind"], label)
    return found


def rounds(results: dict, label: str, key: str) -> list[dict]:
    return results.get("closed", {}).get(label, {}).get(key, [])


def compute(results: dict) -> dict[str, dict[str, list]]:
    """runtime label -> batch key ("b64") -> rounds. Runs before the LiteRT runtime measured
    TensorFlow alone, keyed by batch only."""
    measured = results.get("compute", {})
    if measured and all(key.startswith("b") and isinstance(value, list) for key, value in measured.items()):
        return {"TensorFlow": measured}
    return measured


def value(row: dict, metric: Metric) -> float | None:
    return metric(row) if callable(metric) else row.get(metric)


def by_round(rows: list[dict], metric: Metric) -> dict[int, float]:
    values = {row.get("round", 0): value(row, metric) for row in rows if "error" not in row}
    return {k: v for k, v in values.items() if v is not None}


def summary(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def paired_rounds(first: dict[int, float], second: dict[int, float], op=lambda x, y: x / y) -> dict | None:
    return summary([op(first[k], second[k]) for k in first if k in second and second[k]])


def paired(results: dict, a: tuple[str, str], b: tuple[str, str], metric: Metric, op=lambda x, y: x / y) -> dict | None:
    """op(a, b) per round for two (label, point key) pairs of the closed loop."""
    return paired_rounds(by_round(rounds(results, *a), metric), by_round(rounds(results, *b), metric), op)


def best_compute(results: dict, batch_key: str) -> dict[int, float]:
    """Per round, the highest images/s any runtime reached in the compute ceiling at `batch_key`."""
    best: dict[int, float] = {}
    for batches in compute(results).values():
        for k, v in by_round(batches.get(batch_key, []), "images_per_s").items():
            best[k] = max(best.get(k, 0.0), v)
    return best


def median_metric(results: dict, label: str, key: str, metric: Metric) -> float | None:
    values = list(by_round(rounds(results, label, key), metric).values())
    return statistics.median(values) if values else None


def span(r: dict | None, fmt: str) -> str:
    """A paired summary as "median (rounds min–max)"."""
    if r is None:
        return "not measured"
    if r["n"] == 1:
        return fmt.format(r["median"])
    return f"{fmt.format(r['median'])} (rounds {fmt.format(r['min'])}–{fmt.format(r['max'])})"


def server_cpu_us(row: dict) -> float | None:
    """Server CPU per request of a closed-loop sample (older runs stored only the cores busy)."""
    if row.get("server_cpu_us_per_request") is not None:
        return row["server_cpu_us_per_request"]
    return row["server_cores"] / row["requests_per_s"] * 1e6 if row.get("requests_per_s") else None
