"""Server CPU per request by protocol: the same server and images through each of its doors.

gRPC (--port):
- our API (mnist_serving.v1 Classify, packed pixels), driven by `mnist-client bench` (Python)
- KServe v2 gRPC ModelInfer, by perf_analyzer (C++)
- TF Serving Predict with uint8 int_val pixels, by perf_analyzer
- TF Serving Predict with tensor_content, by benchmarks/tfserving_load.py (Python, built like
  mnist-client bench)

HTTP (--http-port), what the same APIs cost over REST:
- KServe v2 REST infer with binary tensor data, by perf_analyzer -i http (C++)
- TF Serving REST predict, {"instances": ...} of integer pixels, by benchmarks/rest_load.py (Python
  asyncio, aiohttp)
- our API's /api/v1/classify with a JSON ClassifyRequest, by rest_load.py

Server CPU comes from /proc (the server's process tree) and the request count from the server's
own counters (mnist_serving_requests_total for gRPC plus mnist_serving_http_requests_total, every
method, route and status, less the harness's /metrics scrapes: ServerProcess.requests_finished),
both read around each run, so every door is charged the same way (warm-up included) whatever its
load generator reports. The order of the doors is shuffled in every round.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable

from benchmarks import rest_load, triton_load
from benchmarks.load import Point, batching_summary, measure_server
from benchmarks.plan import PROTOCOL_POINTS, Plan
from benchmarks.processes import ServerProcess
from benchmarks.workers import RestLoad, TfServingLoad

GRPC, HTTP = "gRPC", "HTTP"
OURS = "our API"
KSERVE = "KServe v2"
INT_VAL = "TF Serving, int_val"
TENSOR_CONTENT = "TF Serving, tensor_content"
KSERVE_REST = "KServe v2 REST"
INSTANCES_REST = "TF Serving REST, instances"
OURS_REST = "our API REST, JSON"
LOAD_GENERATORS = {
    OURS: "mnist-client bench (Python)",
    KSERVE: "perf_analyzer (C++)",
    INT_VAL: "perf_analyzer (C++)",
    TENSOR_CONTENT: "tfserving_load (Python)",
    KSERVE_REST: "perf_analyzer -i http (C++)",
    INSTANCES_REST: "rest_load (Python)",
    OURS_REST: "rest_load (Python)",
}
TRANSPORTS = {name: HTTP if name in (KSERVE_REST, INSTANCES_REST, OURS_REST) else GRPC for name in LOAD_GENERATORS}
# Each HTTP door against the gRPC doors of the same API: what HTTP costs per request.
REST_VS_GRPC = {KSERVE_REST: [KSERVE], INSTANCES_REST: [TENSOR_CONTENT, INT_VAL], OURS_REST: [OURS]}
PERF_ANALYZER_DOORS = {
    KSERVE: (triton_load.KSERVE, triton_load.GRPC),
    INT_VAL: (triton_load.TFSERVING, triton_load.GRPC),
    KSERVE_REST: (triton_load.KSERVE, triton_load.HTTP),
}
REST_LOAD_APIS = {INSTANCES_REST: rest_load.TFSERVING_INSTANCES, OURS_REST: rest_load.CLASSIFY_JSON}
PERF_ANALYZER_MAX_ATTEMPTS = 2  # a run that hung (triton_load.timeout_s) is made once more


def transport(measured: dict, protocol: str) -> str:
    """gRPC or HTTP; runs before the HTTP doors existed stored no transports: all gRPC."""
    return measured.get("transports", {}).get(protocol, GRPC)


def _charged(server: ServerProcess, run: Callable[[], dict]) -> dict:
    """`run()`'s sample plus what the server spent on it: CPU per request it finished, images per call."""
    requests_before, batching_before = server.requests_finished(), server.batching_counters()
    cpu_before = server.cpu_seconds()
    sample = run()
    cpu = server.cpu_seconds() - cpu_before
    requests_after = server.requests_finished()
    # protocol_costs measures our server only, whose /metrics counts requests
    assert requests_before is not None and requests_after is not None
    requests = requests_after - requests_before
    batching = batching_summary(batching_before, server.batching_counters(), 1.0)
    if "error" in sample:
        return sample
    return {
        **sample,
        "server_requests": requests,
        "mean_batch": batching.get("mean_batch"),
        "server_cpu_us_per_request": cpu / requests * 1e6 if requests else None,
    }


def _charged_again_after_a_hang(server: ServerProcess, run: Callable[[], dict]) -> dict:
    """_charged, run once more when perf_analyzer hung after its last request (triton_load.timeout_s):
    in a window of its own, so the idle wait is charged to no door."""
    attempts, sample = 1, _charged(server, run)
    while sample.get("timed_out") and attempts < PERF_ANALYZER_MAX_ATTEMPTS:
        attempts, sample = attempts + 1, _charged(server, run)
    return {**sample, "attempts": attempts}


def protocol_costs(server: ServerProcess, closed: dict, tfserving: TfServingLoad, rest: RestLoad, plan: Plan) -> dict:
    """Every door at PROTOCOL_POINTS (those in the plan), plan.rounds times."""

    def run(name: str, point: Point) -> dict:
        if name == OURS:
            return measure_server(server, point, plan.seconds, plan.warmup)
        if name == TENSOR_CONTENT:
            return tfserving.measure(server, point, plan.seconds, plan.warmup)
        if name in REST_LOAD_APIS:
            return rest.measure(server, REST_LOAD_APIS[name], point, plan.seconds, plan.warmup)
        # perf_analyzer runs a request count: our API's closed-loop rate x the time of the other runs
        rounds = closed.get(server.spec.label, {}).get(point.key, [])
        rate = statistics.median(r["requests_per_s"] for r in rounds) if rounds else 0.0
        service_kind, protocol = PERF_ANALYZER_DOORS[name]
        return triton_load.measure(
            server, point, int(rate * (plan.seconds + plan.warmup)), service_kind=service_kind, protocol=protocol
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
                sample = _charged_again_after_a_hang(server, lambda: run(name, point))  # noqa: B023 - called at once
                results[name].setdefault(point.key, []).append({**sample, "round": round_index})
    return {
        "label": server.spec.label,
        "load_generators": LOAD_GENERATORS,
        "transports": TRANSPORTS,
        "rest_vs_grpc": REST_VS_GRPC,
        "protocols": results,
    }
