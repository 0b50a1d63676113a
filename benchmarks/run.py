"""`make bench`: every configuration side by side in one run, then the table, JSON and plot.

    python -m benchmarks.run                  # the full run (about 17 minutes), writes docs/
    python -m benchmarks.run --quick          # a one-minute pass over every phase, into .cache/bench/quick/
    python -m benchmarks.run --report-only    # rebuild docs/ from the last JSON without measuring

Phases: cold starts of our server (alone), then every server started at once and measured in
interleaved rounds (closed loop), perf_analyzer against ours, an open-loop rate sweep, a py-spy
profile of ours at full load, and a soak of ours alone (memory over time).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

from benchmarks import machine, phases, plan as plans, profile, report
from benchmarks.load import ComputeWorker, Point
from benchmarks.models import ensure_model, latest_version
from benchmarks.processes import REPO_ROOT, ServerProcess

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
    parser.add_argument("--seconds", type=float, help="measured seconds per point and round (default 3)")
    parser.add_argument("--no-soak", action="store_true", help="skip the 5-minute soak")
    parser.add_argument("--report-only", action="store_true", help="rebuild the Markdown and plot from --results")
    args = parser.parse_args(argv)
    out = QUICK_DIR if args.quick else None
    args.results = args.results or (out / "results.json" if out else DEFAULT_RESULTS)
    args.doc = args.doc or (out / "benchmarks.md" if out else DEFAULT_DOC)
    args.plot = args.plot or (out / "latency_throughput.png" if out else DEFAULT_PLOT)
    return args


def measure(plan: plans.Plan, model_dir: Path, log_dir: Path, profile_dir: Path) -> dict:
    specs = plans.servers(model_dir, plan.ours_variants)
    log_dir.mkdir(parents=True, exist_ok=True)
    default_ours = next(s for s in specs if s.kind == "ours")
    results: dict = {"machine": machine.describe(), "plan": asdict(plan),
                     "model": {"dir": str(model_dir), "version": latest_version(model_dir).name},
                     "servers": {s.label: {"kind": s.kind, "command": [s.module, *s.args[2:]], "note": s.note}
                                 for s in specs}}
    timings = results["phase_seconds"] = {}
    started = time.monotonic()
    phases.log(f"model {model_dir}; cold starts of '{default_ours.label}'")
    results["ready"] = phases.time_to_ready(default_ours, plan.ready_starts, log_dir)
    timings["ready"] = time.monotonic() - started
    with ExitStack() as stack:
        phases.log("starting every configuration")
        compute = ComputeWorker(model_dir, log_dir / "compute.log")
        stack.callback(compute.stop)
        servers = []
        for spec in specs:  # all at once: TensorFlow's import dominates each start
            server = ServerProcess(spec, log_dir / f"{spec.label.replace(' ', '_').replace(',', '')}.log")
            stack.callback(server.stop)
            servers.append(server.launch())
        for server in servers:
            server.wait_ready()
        by_label = {s.spec.label: s for s in servers}
        ours = by_label[default_ours.label]
        for s in servers:
            results["servers"][s.spec.label].update(ready_s=s.ready_s, rss_idle_mb=s.rss_bytes() / 2**20)

        mark = time.monotonic()
        results["compute"], results["closed"] = phases.closed_loop(servers, compute, plan, default_ours.label)
        timings["closed_loop"] = time.monotonic() - mark
        mark = time.monotonic()
        results["gil"] = phases.gil_contention(compute, plan)
        timings["gil"] = time.monotonic() - mark
        compute.stop()

        if plan.perf_analyzer:
            mark = time.monotonic()
            results["perf_analyzer"] = phases.perf_analyzer(ours, results["closed"], plan)
            timings["perf_analyzer"] = time.monotonic() - mark

        mark = time.monotonic()
        swept = [s for s in servers if s.spec.kind in ("null", "naive") or s is ours]
        results["open"] = phases.rate_sweep(swept, results["closed"], plan)
        timings["rate_sweep"] = time.monotonic() - mark

        mark = time.monotonic()
        results["profile"] = profile.profile_server(ours, PROFILE_POINT, plan.profile_seconds, plan.warmup,
                                                    profile_dir)
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
        plan = plans.with_overrides(plan, rounds=args.rounds, seconds=args.seconds,
                                    soak_windows=0 if args.no_soak else None)
        model_dir = ensure_model(args.model_dir)
        log_dir = (QUICK_DIR if args.quick else REPO_ROOT / ".cache" / "bench") / "logs"
        results = measure(plan, model_dir, log_dir, args.results.parent / "profile")
        results["targets"] = report.evaluate_targets(results)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1))
    report.write_markdown(results, args.doc, args.plot)
    from benchmarks import plot  # matplotlib only when drawing

    plot.draw(results, args.plot)
    phases.log(f"wrote {args.results}, {args.doc}, {args.plot}")
    for target in results["targets"]:
        phases.log(f"{'MET ' if target['met'] else 'MISS' if target['met'] is False else '  ? '} "
                   f"{target['name']}: {target['measured']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
