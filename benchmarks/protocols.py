"""Server CPU per request by protocol: the same server and images through each of its doors.

- our API (mnist_serving.v1 Classify, packed pixels), driven by `mnist-client bench` (Python)
- KServe v2 gRPC ModelInfer, by perf_analyzer (C++)
- TF Serving Predict with uint8 int_val pixels, by perf_analyzer
- TF Serving Predict with tensor_content, by benchmarks/tfserving_load.py (Python, built like
  mnist-client bench)

Server CPU comes from /proc (the server's process tree) and the request count from the server's
own counter (mnist_serving_requests_total, every method and status code), both read around each
run, so every door is charged the same way (warm-up included) whatever its load generator
reports. The order of the doors is shuffled in every round.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable

from benchmarks import triton_load
from benchmarks.load import Point, batching_summary, measure_server
from benchmarks.plan import PROTOCOL_POINTS, Plan
from benchmarks.processes import ServerProcess
from benchmarks.workers import TfServingLoad

OURS = "our API"
TENSOR_CONTENT = "TF Serving, tensor_content"
PERF_ANALYZER_KINDS = {"KServe v2": triton_load.KSERVE, "TF Serving, int_val": triton_load.TFSERVING}
LOAD_GENERATORS = {
    OURS: "mnist-client bench (Python)",
    "KServe v2": "perf_analyzer (C++)",
    "TF Serving, int_val": "perf_analyzer (C++)",
    TENSOR_CONTENT: "tfserving_load (Python)",
}


def _charged(server: ServerProcess, run: Callable[[], dict]) -> dict:
    """`run()`'s sample plus what the server spent on it: CPU per request it finished, images per call."""
    requests_before, batching_before = server.requests_finished(), server.batching_counters()
    cpu_before = server.cpu_seconds()
    sample = run()
    cpu = server.cpu_seconds() - cpu_before
    requests = server.requests_finished() - requests_before
    batching = batching_summary(batching_before, server.batching_counters(), 1.0)
    if "error" in sample:
        return sample
    return {
        **sample,
        "server_requests": requests,
        "mean_batch": batching.get("mean_batch"),
        "server_cpu_us_per_request": cpu / requests * 1e6 if requests else None,
    }


def protocol_costs(server: ServerProcess, closed: dict, tfserving: TfServingLoad, plan: Plan) -> dict:
    """Every door at PROTOCOL_POINTS (those in the plan), plan.rounds times."""

    def run(name: str, point: Point) -> dict:
        if name == OURS:
            return measure_server(server, point, plan.seconds, plan.warmup)
        if name == TENSOR_CONTENT:
            return tfserving.measure(server, point, plan.seconds, plan.warmup)
        # perf_analyzer runs a request count: our API's closed-loop rate x the time of the other runs
        rounds = closed.get(server.spec.label, {}).get(point.key, [])
        rate = statistics.median(r["requests_per_s"] for r in rounds) if rounds else 0.0
        return triton_load.measure(
            server, point, int(rate * (plan.seconds + plan.warmup)), service_kind=PERF_ANALYZER_KINDS[name]
        )

    wanted = set(plan.closed_points())
    points = [p for p in PROTOCOL_POINTS if p in wanted]
    shuffle = random.Random(11).shuffle
    results: dict[str, dict[str, list]] = {name: {} for name in LOAD_GENERATORS}
    for round_index in range(plan.rounds):
        for point in points:
            order = list(LOAD_GENERATORS)
            shuffle(order)
            for name in order:
                sample = _charged(server, lambda: run(name, point))  # noqa: B023 - called at once
                results[name].setdefault(point.key, []).append({**sample, "round": round_index})
    return {"label": server.spec.label, "load_generators": LOAD_GENERATORS, "protocols": results}
