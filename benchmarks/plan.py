"""What one `make bench` run measures, the short version the smoke test runs, and how long each takes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.load import Point
from benchmarks.processes import ServerSpec, naive, null, ours

# Variants are measured where their setting shows: one client (the latency a setting adds),
# 64 clients of one image (where batching matters) and 64 clients of 64 images (throughput).
# Variants made with all_points=True (the runtimes: which one wins where) are measured everywhere.
VARIANT_POINTS = (Point(1, 1), Point(64, 1), Point(64, 64))
# Where each protocol's server CPU per request is compared, gRPC and HTTP (the load that batches, and one client).
PROTOCOL_POINTS = (Point(64, 1), Point(1, 1))


@dataclass(frozen=True)
class Plan:
    rounds: int = 3  # every closed-loop point is measured this often, interleaved
    seconds: float = 2.5  # measured time per point per round
    warmup: float = 0.5  # unmeasured time before each measurement
    concurrencies: tuple[int, ...] = (1, 8, 64)
    batches: tuple[int, ...] = (1, 64)
    # The compute ceiling per runtime, at the batches where the auto runtime's switch point is read.
    compute_batches: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256)
    compute_seconds: float = 1.5  # a direct model call varies far less than a server run
    gil_batches: tuple[int, ...] = (1, 8, 64, 256)  # TensorFlow's call next to busy Python
    sweep_fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 0.7, 0.85, 1.0, 1.2)
    sweep_seconds: float = 4.0
    ready_starts: int = 3  # cold starts per runtime, each alone on the machine
    profile_seconds: float = 10.0
    soak_windows: int = 10  # back-to-back load runs at full load ...
    soak_window_seconds: float = 30.0  # ... of this length (5 minutes in all)
    perf_analyzer: bool = True
    ours_variants: int | None = None  # how many of variants() besides our defaults; None: all
    optional_variants: bool = False  # also OPTIONAL_VARIANTS (--all-variants)

    def closed_points(self) -> list[Point]:
        return [Point(c, b) for b in self.batches for c in self.concurrencies]


QUICK = Plan(
    rounds=1,
    seconds=0.5,
    warmup=0.2,
    concurrencies=(1, 64),
    compute_batches=(1, 64),
    compute_seconds=0.3,
    gil_batches=(1, 64),
    sweep_fractions=(0.5, 1.0),
    sweep_seconds=0.5,
    ready_starts=1,
    profile_seconds=1.0,
    soak_windows=2,
    soak_window_seconds=1.0,
    ours_variants=2,
)


@dataclass(frozen=True)
class ComputeRuntime:
    """One column of the compute-ceiling table: a runtime with a thread count."""

    label: str
    runtime: str  # benchmarks.compute_ceiling.RUNTIMES key
    threads: int  # LiteRT interpreter threads (0: TensorFlow's own pools, as the server leaves them)


def compute_runtimes(cores: int) -> list[ComputeRuntime]:
    """TensorFlow, LiteRT with a thread per core (the server's default) and LiteRT with one."""
    runtimes = [
        ComputeRuntime("TensorFlow", "tensorflow", 0),
        ComputeRuntime(f"LiteRT {cores} threads", "litert", cores),
    ]
    if cores > 1:
        runtimes.append(ComputeRuntime("LiteRT 1 thread", "litert", 1))
    return runtimes


def variants(model_dir: Path) -> list[ServerSpec]:
    """Our server's configurations, our defaults first. Edit here to measure another setting."""
    return [
        ours("ours", model_dir, note="defaults", all_points=True),
        ours(
            "ours, TensorFlow runtime",
            model_dir,
            "--runtime",
            "tensorflow",
            all_points=True,
            note="--runtime tensorflow: the SavedModel at every batch size",
        ),
        ours(
            "ours, LiteRT runtime",
            model_dir,
            "--runtime",
            "litert",
            all_points=True,
            note="--runtime litert: model.tflite at every batch size",
        ),
        ours(
            "ours, LiteRT up to 32",
            model_dir,
            "--litert-max-batch-size",
            "32",
            all_points=True,
            note="--litert-max-batch-size 32: auto's switch fixed where a Xeon's ceilings crossed (the default "
            "before the switch was measured at load)",
        ),
        ours(
            "ours, no adaptive wait",
            model_dir,
            "--adaptive-batch-window-ms",
            "0",
            note="--adaptive-batch-window-ms 0: never wait for company while the model is idle",
        ),
        ours(
            "ours, adaptive window 1 ms",
            model_dir,
            "--adaptive-batch-window-ms",
            "1",
            note="--adaptive-batch-window-ms 1: wait at most 1 ms for company",
        ),
        ours(
            "ours, no inline compute",
            model_dir,
            "--inline-max-batch-size",
            "0",
            note="--inline-max-batch-size 0: every batch computed on the model worker threads",
        ),
        ours(
            "ours, max batch 128",
            model_dir,
            "--max-batch-size",
            "128",
            all_points=True,
            note="--max-batch-size 128: two 64-image requests per TensorFlow call",
        ),
        ours(
            "ours, 1 batch at a time",
            model_dir,
            "--max-concurrent-batches",
            "1",
            note="--max-concurrent-batches 1: one model worker, the next batch forms when it is done",
        ),
        ours(
            "ours, no batching", model_dir, "--max-batch-size", "1", note="--max-batch-size 1: what batching alone buys"
        ),
        ours(
            "ours, timeout 2 ms",
            model_dir,
            "--batch-timeout-ms",
            "2",
            note="--batch-timeout-ms 2: a fixed wait for a fuller batch",
        ),
        ours(
            "ours, 1 thread",
            model_dir,
            "--intra-op-threads",
            "1",
            note="--intra-op-threads 1: one compute thread (TensorFlow and LiteRT), a core left to the event loop",
        ),
    ]


def optional_variants(model_dir: Path) -> list[ServerSpec]:
    """Measured only with --all-variants: each costs about half a minute of the full run, and
    round 1 already answered what they asked (docs/benchmarks.md: a smaller max batch only loses
    at 64 images), while the runtime variants, which the defaults will be chosen from, need every
    closed-loop point (about 25 minutes in all)."""
    return [
        ours(
            "ours, asyncio loop",
            model_dir,
            "--event-loop",
            "asyncio",
            note="--event-loop asyncio: the standard library's loop instead of uvloop",
        ),
        ours("ours, max batch 32", model_dir, "--max-batch-size", "32", note="--max-batch-size 32"),
    ]


def servers(model_dir: Path, plan: Plan) -> list[ServerSpec]:
    """Every server configuration measured side by side. The first `ours` is the default."""
    ours_specs = variants(model_dir)
    if plan.ours_variants is not None:
        ours_specs = ours_specs[: 1 + plan.ours_variants]
    if plan.optional_variants:
        ours_specs += optional_variants(model_dir)
    return [null(), naive(model_dir), *ours_specs]


def runtime_specs(model_dir: Path) -> list[ServerSpec]:
    """Cold start and memory per runtime: our defaults (whatever runtime they choose, shown from
    /metrics) and the variants that pin a runtime."""
    specs = variants(model_dir)
    return [specs[0]] + [s for s in specs[1:] if "--runtime" in s.args]


def points_for(spec: ServerSpec, plan: Plan) -> list[Point]:
    """The closed-loop points a configuration is measured at (variants: the ones they change)."""
    if spec.kind != "ours" or spec.all_points:
        return plan.closed_points()
    wanted = set(plan.closed_points())
    return [p for p in VARIANT_POINTS if p in wanted]


def with_overrides(plan: Plan, **overrides) -> Plan:
    return replace(plan, **{k: v for k, v in overrides.items() if v is not None})


# Costs around each measurement, from earlier full runs: starting the load generator's worker
# and connecting (per measurement), a server's cold start, stopping one, a memory probe.
MEASUREMENT_OVERHEAD_S = 0.55
SERVER_START_S = 2.7
SERVER_STOP_S = 0.5
PROBE_S = 2.0
# Doors of the protocols phase (protocols.LOAD_GENERATORS). gRPC: ours, KServe v2 and TF Serving int_val
# (perf_analyzer), TF Serving tensor_content (Python); HTTP: KServe v2 REST (perf_analyzer), TF Serving
# REST instances and our /api/v1/classify JSON (rest_load, Python).
PROTOCOLS = 7


def estimated_seconds(plan: Plan, specs: list[ServerSpec], runtime_count: int, compute_count: int) -> dict:
    """How long each phase should take (the full run's total is logged at its start)."""
    per_run = plan.seconds + plan.warmup + MEASUREMENT_OVERHEAD_S
    warm_up = 2 * (2 * plan.warmup + MEASUREMENT_OVERHEAD_S)  # footprint: c64 x 1 and x 64 images
    phases = {
        "footprint": runtime_count * plan.ready_starts * (SERVER_START_S + warm_up + SERVER_STOP_S)
        + 2 * plan.ready_starts * PROBE_S,
        "start_all": len(specs) * SERVER_START_S / 2,  # started at once, on two cores
        "closed_loop": plan.rounds
        * (
            compute_count * len(plan.compute_batches) * (plan.compute_seconds + 0.05)
            + sum(len(points_for(s, plan)) for s in specs) * per_run
        ),
        "gil": plan.rounds * len(plan.gil_batches) * 2 * (plan.compute_seconds + 0.05),
        "perf_analyzer": len(plan.closed_points()) * (plan.seconds + 0.5) if plan.perf_analyzer else 0.0,
        "protocols": plan.rounds * len(PROTOCOL_POINTS) * PROTOCOLS * per_run,
        "rate_sweep": 3 * len(plan.sweep_fractions) * (plan.sweep_seconds + plan.warmup + MEASUREMENT_OVERHEAD_S),
        "profile": 2 * (plan.profile_seconds + 1.0 + plan.warmup + MEASUREMENT_OVERHEAD_S),
        "soak": plan.soak_windows * (plan.soak_window_seconds + plan.warmup + MEASUREMENT_OVERHEAD_S),
    }
    phases["total"] = sum(phases.values())
    return phases
