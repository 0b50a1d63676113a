"""The per-protocol part of docs/benchmarks.md's Results block: server CPU per request through each
door (gRPC and HTTP) at each point, and what each REST door costs against its API's gRPC door."""

from __future__ import annotations

import statistics

from benchmarks.protocols import OURS, transport
from benchmarks.readings import by_round, paired_rounds, span


def protocol_tables(results: dict) -> list[str]:
    measured = results.get("protocols")
    if not measured:
        return []
    by_protocol = measured["protocols"]
    lines = [
        f"### Server CPU per request, by protocol (`{measured['label']}`)",
        "",
        "The same server and images through each door, over gRPC (`--port`) and over HTTP (`--http-port`, "
        "the same APIs' REST forms). Server CPU from /proc over each run divided by the requests the server "
        "itself counted on both ports (warm-up included, the harness's /metrics scrapes left out), so every "
        "protocol is charged alike; *vs ours* is against our API over gRPC, pairing the rounds. The load "
        "generators differ in their own CPU cost and in how they pace requests (perf_analyzer makes "
        "synchronous calls), which changes the batches the server forms (images per model call) and with "
        "them its CPU per request: our API against TF Serving tensor_content, both from Python asyncio, is "
        "the like-for-like gRPC pair; each REST door is compared with the gRPC door of its API below the table.",
        "",
    ]
    points = sorted({key for points in by_protocol.values() for key in points}, key=lambda k: -int(k[1:].split()[0]))
    for key in points:
        ours = by_round(by_protocol[OURS].get(key, []), "server_cpu_us_per_request")
        lines += [
            f"**{key}**",
            "",
            "| protocol | over | load generator | images/s | server CPU µs / request | vs ours "
            "| images per model call |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for protocol, points_measured in by_protocol.items():
            rounds = points_measured.get(key, [])
            failed = [r["error"] for r in rounds if "error" in r]
            good = [r for r in rounds if "error" not in r]
            generator = measured["load_generators"].get(protocol, "?")
            over = transport(measured, protocol)
            if not good:
                lines.append(
                    f"| {protocol} | {over} | {generator} | failed: `{(failed or ['not measured'])[-1][-120:]}` | | | |"
                )
                continue

            def med(metric: str, good=good) -> float:
                return statistics.median(v for r in good if (v := r.get(metric)) is not None)

            cpu = med("server_cpu_us_per_request")
            batches = [r["mean_batch"] for r in good if r.get("mean_batch") is not None]
            per_call = f"{statistics.median(batches):.1f}" if batches else "–"
            vs = (
                "1"
                if protocol == OURS
                else span(paired_rounds(by_round(good, "server_cpu_us_per_request"), ours), "{:.2f}x")
            )
            lines.append(
                f"| {protocol} | {over} | {generator} | {med('images_per_s'):,.0f} | {cpu:.0f} | {vs} | {per_call} |"
            )
        lines += [""] + _rest_vs_grpc(measured, key)
    return lines


def _rest_vs_grpc(measured: dict, key: str) -> list[str]:
    """One sentence per point: each REST door's server CPU per request over its API's gRPC door's."""

    def cpu(door: str) -> dict[int, float]:
        return by_round(measured["protocols"].get(door, {}).get(key, []), "server_cpu_us_per_request")

    phrases = [
        f"*{rest} ÷ {door}* {span(ratio, '{:.2f}x')}"
        for rest, grpc_doors in measured.get("rest_vs_grpc", {}).items()
        for door in grpc_doors
        if (ratio := paired_rounds(cpu(rest), cpu(door)))
    ]
    if not phrases:
        return []
    return [
        f"What HTTP costs per request at {key}: server CPU per request of each REST door ÷ that of the same "
        f"API's gRPC door (paired rounds): {'; '.join(phrases)}.",
        "",
    ]
