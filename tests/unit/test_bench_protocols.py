"""The protocols phase's HTTP doors in the run's JSON: the target about TF Serving's and KServe's
cost stays about their gRPC doors, and the report says which door is gRPC and which HTTP and what
REST costs over gRPC for the same API. Built from a made-up run, no server."""

from __future__ import annotations

import pytest

from benchmarks import plan, protocols, report_protocols, targets

MANY, ONE = "c64 b1", "c1 b1"


def _rounds(cpu_us: float) -> list[dict]:
    return [
        {"round": k, "images_per_s": 1000.0, "server_cpu_us_per_request": cpu_us * (1 + k / 10), "mean_batch": 4.0}
        for k in range(2)
    ]


def _measured(cpu_us: dict[str, float]) -> dict:
    return {
        "label": "ours",
        "load_generators": protocols.LOAD_GENERATORS,
        "transports": protocols.TRANSPORTS,
        "rest_vs_grpc": protocols.REST_VS_GRPC,
        "protocols": {name: {MANY: _rounds(cpu), ONE: _rounds(cpu)} for name, cpu in cpu_us.items()},
    }


GRPC_COSTS = {protocols.OURS: 300.0, protocols.KSERVE: 330.0, protocols.INT_VAL: 360.0, protocols.TENSOR_CONTENT: 345.0}
REST_COSTS = {protocols.KSERVE_REST: 660.0, protocols.INSTANCES_REST: 1380.0, protocols.OURS_REST: 450.0}


def test_every_door_has_a_transport_and_every_rest_door_a_grpc_counterpart():
    assert set(protocols.TRANSPORTS) == set(protocols.LOAD_GENERATORS)
    rest = {name for name, over in protocols.TRANSPORTS.items() if over == protocols.HTTP}
    assert rest == set(protocols.REST_VS_GRPC) == {"KServe v2 REST", "TF Serving REST, instances", "our API REST, JSON"}
    for doors in protocols.REST_VS_GRPC.values():
        assert all(protocols.TRANSPORTS[door] == protocols.GRPC for door in doors)


def test_the_time_estimate_counts_every_door():
    assert plan.PROTOCOLS == len(protocols.LOAD_GENERATORS)


def test_the_protocol_target_judges_the_grpc_doors_only():
    grpc_only = targets._protocols_vs_ours({"protocols": _measured(GRPC_COSTS)})
    with_rest = targets._protocols_vs_ours({"protocols": _measured(GRPC_COSTS | REST_COSTS)})
    assert with_rest == grpc_only and with_rest["met"] is True  # REST at 2-4x ours changes nothing
    assert "REST" not in with_rest["measured"]


def test_a_run_from_before_the_http_doors_is_read_as_all_grpc():
    old = _measured(GRPC_COSTS)
    del old["transports"], old["rest_vs_grpc"]
    assert targets._protocols_vs_ours({"protocols": old})["met"] is True
    lines = report_protocols.protocol_tables({"protocols": old})
    assert sum("| gRPC |" in line for line in lines) == 2 * len(GRPC_COSTS)
    assert not any("What HTTP costs" in line for line in lines)


def test_the_report_marks_each_door_grpc_or_http_and_gives_rest_over_grpc():
    lines = report_protocols.protocol_tables({"protocols": _measured(GRPC_COSTS | REST_COSTS)})
    rows = [line for line in lines if line.startswith("| ") and "µs" not in line]
    assert sum("| HTTP |" in row for row in rows) == 2 * len(REST_COSTS)
    assert sum("| gRPC |" in row for row in rows) == 2 * len(GRPC_COSTS)
    assert any(row.startswith("| KServe v2 REST | HTTP | perf_analyzer -i http (C++) | 1,000 | ") for row in rows)
    sentences = [line for line in lines if line.startswith("What HTTP costs per request")]
    assert len(sentences) == 2  # one per point
    for pair, ratio in (
        ("KServe v2 REST ÷ KServe v2", "2.00x"),
        ("TF Serving REST, instances ÷ TF Serving, tensor_content", "4.00x"),
        ("TF Serving REST, instances ÷ TF Serving, int_val", "3.83x"),
        ("our API REST, JSON ÷ our API", "1.50x"),
    ):
        assert f"*{pair}* {ratio} (rounds {ratio}–{ratio})" in sentences[0]


class _IdleServer:
    """What _charged reads from a server: counters that move only when a run sends requests."""

    def __init__(self):
        self.requests, self.cpu = 0.0, 0.0

    def requests_finished(self) -> float:
        return self.requests

    def batching_counters(self) -> None:
        return None

    def cpu_seconds(self) -> float:
        return self.cpu


def test_a_perf_analyzer_run_that_hung_is_made_again_in_a_window_of_its_own():
    server = _IdleServer()
    outcomes = [{"error": "TimeoutExpired: ...", "timed_out": True}, {"images_per_s": 900.0}]

    def run() -> dict:
        outcome = outcomes.pop(0)
        if "timed_out" in outcome:
            server.cpu += 5.0  # the idle wait: must be charged to no one
        else:
            server.requests, server.cpu = server.requests + 1000, server.cpu + 0.3
        return outcome

    sample = protocols._charged_again_after_a_hang(server, run)
    assert sample["attempts"] == 2 and "error" not in sample
    assert sample["server_requests"] == 1000 and sample["server_cpu_us_per_request"] == pytest.approx(300.0)


def test_other_failures_and_a_second_hang_are_reported_as_they_are():
    server = _IdleServer()
    hung = {"error": "TimeoutExpired: ...", "timed_out": True}
    assert protocols._charged_again_after_a_hang(server, lambda: dict(hung))["attempts"] == 2
    failed = protocols._charged_again_after_a_hang(server, lambda: {"error": "connection refused"})
    assert failed == {"error": "connection refused", "attempts": 1}
