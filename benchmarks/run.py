"""`make bench`: every configuration side by side in one run, then the table, JSON and plot.

    python -m benchmarks.run                  # the full run (about 25 minutes, logged at its start), writes docs/
    python -m benchmarks.run --quick          # a one-to-two-minute pass over every phase, into .cache/bench/quick/
    python -m benchmarks.run --report-only    # rebuild docs/ from the last JSON without measuring

Phases: cold starts and memory of our server per runtime, and of a LiteRT-only process (each alone);
then every server started at once and measured in interleaved rounds (closed loop, with the
compute ceiling of each runtime), the GIL's toll on a model call, perf_analyzer against ours,
server CPU per request through each protocol (gRPC and HTTP), an open-loop rate sweep, a py-spy
profile of ours at full load, and a soak of ours alone (memory over time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

from benchmarks import footprint, headline, machine, phases, profile, protocols, report, targets
from benchmarks import plan as plans
from benchmarks.load import Point
from benchmarks.models import ensure_model, latest_version
from benchmarks.processes import REPO_ROOT, ServerProcess
from benchmarks.workers import ComputeWorker, RestLoad, TfServingLoad

DOCS = REPO_ROOT / "docs"
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results" / "latest.json"
DEFAULT_DOC = DOCS / "benchmarks.md"
DEFAULT_PLOT = DOCS / "images" / "latency_throughput.png"
QUICK_DIR = REPO_ROOT / ".cache" / "bench" / "quick"
PROFILE_POINT = Point(64, 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every phase, briefly (the smoke test)")
    parser.add_argument("--model-dir", type=Path, help="model base path (default: train one, cached)")
    parser.add_argument("--results", type=Path, help=f"JSON out (default {DEFAULT_RESULTS.relative_to(REPO_ROOT)})")
    parser.add_argument("--doc", type=Path, help=f"Markdown out (default {DEFAULT_DOC.relative_to(REPO_ROOT)})")
    parser.add_argument("--plot", type=Path, help=f"PNG out (default {DEFAULT_PLOT.relative_to(REPO_ROOT)})")
    parser.add_argument("--rounds", type=int, help="closed-loop rounds (default 3)")
    parser.add_argument("--seconds", type=float, help="measured seconds per point and round (default 2.5)")
    parser.add_argument("--no-soak", action="store_true", help="skip the 5-minute soak")
    parser.add_argument(
        "--all-variants",
        action="store_true",
        help="also the variants left out of the default list (plan.optional_variants)",
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the Markdown and plot from --results")
    args = parser.parse_args(argv)
    out = QUICK_DIR if args.quick else None
    args.results = args.results or (out / "results.json" if out else DEFAULT_RESULTS)
    args.doc = args.doc or (out / "benchmarks.md" if out else DEFAULT_DOC)
    args.plot = args.plot or (out / "latency_throughput.png" if out else DEFAULT_PLOT)
    return args


def measure(plan: plans.Plan, model_dir: Path, log_dir: Path, profile_dir: Path) -> dict:
    specs = plans.servers(model_dir, plan)
    runtime_specs = plans.runtime_specs(model_dir)
    runtimes = plans.compute_runtimes(len(os.sched_getaffinity(0)))
    log_dir.mkdir(parents=True, exist_ok=True)
    default_ours = next(s for s in specs if s.kind == "ours")
    results: dict = {
        "machine": machine.describe(),
        "plan": asdict(plan),
        "model": {"dir": str(model_dir), "version": latest_version(model_dir).name},
        "servers": {s.label: {"kind": s.kind, "command": [s.module, *s.args[2:]], "note": s.note} for s in specs},
        "compute_runtimes": [asdict(r) for r in runtimes],
    }
    estimate = plans.estimated_seconds(plan, specs, len(runtime_specs), len(runtimes))
    results["estimated_seconds"] = estimate
    timings = results["phase_seconds"] = {}
    started = time.monotonic()
    phases.log(f"model {model_dir}; {len(specs)} configurations; about {estimate['total'] / 60:.0f} minutes")

    phases.log("cold starts and memory per runtime, each server alone")
    results["footprint"] = footprint.measure(runtime_specs, model_dir, plan.ready_starts, plan.warmup, log_dir)
    default_starts = results["footprint"]["servers"][default_ours.label]["starts_s"]
    results["ready"] = {
        "label": default_ours.label,
        "starts_s": default_starts,
        "median_s": statistics.median(default_starts),
        "max_s": max(default_starts),
    }
    timings["footprint"] = time.monotonic() - started
    with ExitStack() as stack:
        mark = time.monotonic()
        phases.log("starting every configuration")
        compute = ComputeWorker(model_dir, log_dir / "compute.log")
        stack.callback(compute.stop)
        servers = []
        for spec in specs:  # all at once: TensorFlow's import dominates each start
            server = ServerProcess(spec, log_dir / f"{spec.slug}.log")
            stack.callback(server.stop)
            servers.append(server.launch())
        for server in servers:
            server.wait_ready()
        by_label = {s.spec.label: s for s in servers}
        ours = by_label[default_ours.label]
        for s in servers:
            results["servers"][s.spec.label].update(
                ready_s=s.ready_s, rss_idle_mb=s.rss_bytes() / 2**20, runtime=", ".join(s.model_runtimes()) or None
            )
        timings["start_all"] = time.monotonic() - mark

        mark = time.monotonic()
        results["compute"], results["closed"] = phases.closed_loop(servers, compute, runtimes, plan)
        timings["closed_loop"] = time.monotonic() - mark
        mark = time.monotonic()
        results["gil"] = phases.gil_contention(compute, runtimes[0], plan)
        timings["gil"] = time.monotonic() - mark
        compute.stop()

        if plan.perf_analyzer:
            mark = time.monotonic()
            results["perf_analyzer"] = phases.perf_analyzer(ours, results["closed"], plan)
            timings["perf_analyzer"] = time.monotonic() - mark

        mark = time.monotonic()
        tfserving = TfServingLoad(log_dir / "tfserving_load.log")
        stack.callback(tfserving.stop)
        rest = RestLoad(log_dir / "rest_load.log")
        stack.callback(rest.stop)
        results["protocols"] = protocols.protocol_costs(ours, results["closed"], tfserving, rest, plan)
        tfserving.stop()
        rest.stop()
        phases.log("server CPU per request measured for every protocol")
        timings["protocols"] = time.monotonic() - mark

        mark = time.monotonic()
        swept = [s for s in servers if s.spec.kind in ("null", "naive") or s is ours]
        results["open"] = phases.rate_sweep(swept, results["closed"], plan)
        timings["rate_sweep"] = time.monotonic() - mark

        mark = time.monotonic()
        results["profile"] = profile.profile_server(ours, PROFILE_POINT, plan.profile_seconds, plan.warmup, profile_dir)
        timings["profile"] = time.monotonic() - mark

        if plan.soak_windows:
            for s in servers:
                if s is not ours:
                    s.stop()
            mark = time.monotonic()
            phases.log(f"soak: {plan.soak_windows} x {plan.soak_window_seconds:.0f} s at full load")
            results["soak"] = phases.soak(ours, plan)
            timings["soak"] = time.monotonic() - mark
    timings["total"] = time.monotonic() - started
    results["machine"]["load_average_end"] = os.getloadavg()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        results = json.loads(args.results.read_text())
    else:
        plan = plans.QUICK if args.quick else plans.Plan()
        plan = plans.with_overrides(
            plan,
            rounds=args.rounds,
            seconds=args.seconds,
            soak_windows=0 if args.no_soak else None,
            optional_variants=True if args.all_variants else None,
        )
        model_dir = ensure_model(args.model_dir)
        log_dir = (QUICK_DIR if args.quick else REPO_ROOT / ".cache" / "bench") / "logs"
        results = measure(plan, model_dir, log_dir, args.results.parent / "profile")
        results["targets"] = targets.evaluate_targets(results)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1))
    report.write_markdown(results, args.doc, args.plot)
    if not args.quick and args.results == DEFAULT_RESULTS:  # the README's figures follow the published run
        headline.main(["--results", str(args.results)])
    from benchmarks import plot  # matplotlib only when drawing

    plot.draw(results, args.plot)
    phases.log(f"wrote {args.results}, {args.doc}, {args.plot}")
    for target in results["targets"]:
        phases.log(
            f"{'MET ' if target['met'] else 'MISS' if target['met'] is False else '  ? '} "
            f"{target['name']}: {target['measured']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
