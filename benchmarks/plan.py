"""What one `make bench` run measures, and the short version the smoke test runs."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.load import Point
from benchmarks.processes import ServerSpec, naive, null, ours

# Variants are measured where their setting shows: one client (the latency a setting adds),
# 64 clients of one image (where batching matters) and 64 clients of 64 images (throughput).
VARIANT_POINTS = (Point(1, 1), Point(64, 1), Point(64, 64))


@dataclass(frozen=True)
class Plan:
    rounds: int = 3              # every closed-loop point is measured this often, interleaved
    seconds: float = 2.5         # measured time per point per round
    warmup: float = 0.5          # unmeasured time before each measurement
    concurrencies: tuple[int, ...] = (1, 8, 64)
    batches: tuple[int, ...] = (1, 64)
    compute_batches: tuple[int, ...] = (1, 8, 64, 256)
    sweep_fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 0.7, 0.85, 1.0, 1.2)
    sweep_seconds: float = 4.0
    ready_starts: int = 3        # cold starts of our server, timed alone
    profile_seconds: float = 10.0
    soak_windows: int = 10       # back-to-back load runs at full load ...
    soak_window_seconds: float = 30.0  # ... of this length (5 minutes in all)
    perf_analyzer: bool = True
    ours_variants: int = 6       # settings measured besides our defaults (see servers())

    def closed_points(self) -> list[Point]:
        return [Point(c, b) for b in self.batches for c in self.concurrencies]


QUICK = Plan(rounds=1, seconds=0.5, warmup=0.2, concurrencies=(1, 64), compute_batches=(1, 64),
             sweep_fractions=(0.5, 1.0), sweep_seconds=0.5, ready_starts=1, profile_seconds=1.0,
             soak_windows=2, soak_window_seconds=1.0, ours_variants=1)


def servers(model_dir: Path, ours_variants: int) -> list[ServerSpec]:
    """Every server configuration measured side by side. The first `ours` is the default."""
    variants = [
        ours("ours", model_dir, note="defaults"),
        ours("ours, no batching", model_dir, "--max-batch-size", "1",
             note="--max-batch-size 1: what batching alone buys"),
        ours("ours, timeout 2 ms", model_dir, "--batch-timeout-ms", "2",
             note="--batch-timeout-ms 2: wait for a fuller batch"),
        ours("ours, max batch 32", model_dir, "--max-batch-size", "32", note="--max-batch-size 32"),
        ours("ours, 1 TF thread", model_dir, "--intra-op-threads", "1",
             note="--intra-op-threads 1: leave a core to the event loop"),
        ours("ours, asyncio loop", model_dir, "--event-loop", "asyncio",
             note="--event-loop asyncio: the standard library's loop instead of uvloop"),
        # an experiment, not a setting: benchmarks/model_process_prototype.py
        replace(ours("model in a child process (prototype)", model_dir,
                     note="not shipped: each batch computed in a child process, no GIL shared with the loop"),
                module="benchmarks.model_process_prototype"),
    ]
    return [null(), naive(model_dir), *variants[:1 + ours_variants]]


def points_for(spec: ServerSpec, plan: Plan, default_ours: str) -> list[Point]:
    """The closed-loop points a configuration is measured at (variants: the ones they change)."""
    if spec.kind != "ours" or spec.label == default_ours:
        return plan.closed_points()
    wanted = set(plan.closed_points())
    return [p for p in VARIANT_POINTS if p in wanted]


def with_overrides(plan: Plan, **overrides) -> Plan:
    return replace(plan, **{k: v for k, v in overrides.items() if v is not None})
