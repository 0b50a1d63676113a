"""A second, independent load generator: Triton's perf_analyzer (C++), over one of our compatible
doors: KServe v2 (`--service-kind=triton`) over gRPC or over HTTP (`-i http`: Triton's REST API
with its binary tensor data extension, perf_analyzer's default there), or TF Serving's Predict
over gRPC (`--service-kind=tfserving`, which sends uint8 pixels as TensorProto int_val, shaped from
the model's GetModelMetadata).

It costs the shared CPUs far less per request than a Python client, so it shows how much of a
Python-driven number is the load generator's own cost. Each run is bounded by a request count
(no stability search, which never settles on a busy machine) and a timeout.
"""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import tempfile
from pathlib import Path

from benchmarks.load import Point
from benchmarks.processes import REPO_ROOT, ServerProcess

MIN_REQUESTS = 100
# perf_analyzer (2.51) now and then never exits after its last answer (seen over gRPC and HTTP, a few
# runs in a hundred): a run is given time for its requests at SLOWEST_RATE (below any rate measured
# here, 64-image requests included) plus MIN_TIMEOUT_S, at most TIMEOUT_S; one that overstays is
# reported as timed out, for the caller to run again.
TIMEOUT_S = 180.0
MIN_TIMEOUT_S = 30.0
SLOWEST_RATE = 100.0  # requests/s
KSERVE, TFSERVING = "triton", "tfserving"
GRPC, HTTP = "grpc", "http"  # perf_analyzer -i


def _installer():
    """scripts/perf_analyzer.py (installs the pinned binary on first use, sets LD_LIBRARY_PATH)."""
    spec = importlib.util.spec_from_file_location("perf_analyzer_installer", REPO_ROOT / "scripts" / "perf_analyzer.py")
    assert spec is not None and spec.loader is not None  # a .py path: a source file spec with its loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timeout_s(requests: int) -> float:
    """How long a run of `requests` may take before it counts as hung."""
    return min(TIMEOUT_S, MIN_TIMEOUT_S + requests / SLOWEST_RATE)


def _ms(row: dict, column: str) -> float | None:
    """A microsecond column of the report in ms; None where this service kind has no such column
    (TF Serving reports no server-side breakdown)."""
    value = row.get(column)
    return float(value) / 1e3 if value not in (None, "") else None


def measure(
    server: ServerProcess,
    point: Point,
    requests: int,
    model: str = "mnist",
    service_kind: str = KSERVE,
    protocol: str = GRPC,
) -> dict:
    """perf_analyzer at closed-loop `point` for exactly `requests` requests -> a sample like
    load.measure_server's (plus `requests`, what was sent). `protocol` HTTP drives our HTTP port
    (KServe v2 only: perf_analyzer speaks TF Serving over gRPC alone)."""
    if protocol == HTTP and service_kind != KSERVE:
        raise ValueError("perf_analyzer drives TF Serving over gRPC only")
    installer = _installer()
    requests = max(MIN_REQUESTS, requests)
    with tempfile.TemporaryDirectory(prefix="bench-perf-analyzer-") as tmp:
        report = Path(tmp) / "report.csv"
        args = [
            "-m",
            model,
            "-u",
            server.http_target if protocol == HTTP else server.target,
            "-i",
            protocol,
            f"--service-kind={service_kind}",
            "--concurrency-range",
            f"{point.concurrency}:{point.concurrency}",
            "-b",
            str(point.batch),
            "--request-count",
            str(requests),
            "-f",
            str(report),
        ]
        try:
            run = subprocess.run(
                installer.command(args),
                env=installer.environment(),
                capture_output=True,
                text=True,
                timeout=timeout_s(requests),
            )
        except subprocess.TimeoutExpired as exc:
            return {"error": f"{type(exc).__name__}: {exc}", "timed_out": True}
        except (OSError, SystemExit) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        if run.returncode != 0 or not report.is_file():
            return {"error": (run.stdout + run.stderr).strip()[-500:] or f"exit code {run.returncode}"}
        row = next(csv.DictReader(report.open()))
    return {
        "images_per_s": float(row["Inferences/Second"]),  # perf_analyzer counts images (batch x requests)
        "requests_per_s": float(row["Inferences/Second"]) / point.batch,
        "requests": requests,
        "p50_ms": _ms(row, "p50 latency"),
        "p99_ms": _ms(row, "p99 latency"),
        "server_queue_ms": _ms(row, "Server Queue"),
        "server_compute_ms": _ms(row, "Server Compute Infer"),
    }
