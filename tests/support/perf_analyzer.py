"""Runs Triton's perf_analyzer (installed by scripts/perf_analyzer.py) against a server; bounded.

`run(...)` gives back the exit code, the combined output and the per-request records from
perf_analyzer's `--profile-export-file`, so a test can count successes and errors itself.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _installer():
    spec = importlib.util.spec_from_file_location("perf_analyzer_installer", REPO_ROOT / "scripts" / "perf_analyzer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class PerfRun:
    returncode: int
    output: str
    requests: list[dict]  # one record per request: timestamps, and "response_timestamps"

    @property
    def completed(self) -> int:
        return sum(1 for r in self.requests if r.get("response_timestamps"))


def run(
    address: str,
    *,
    service_kind: str,
    model: str,
    concurrency: int = 8,
    request_count: int = 400,
    extra: tuple[str, ...] = (),
    timeout_s: float = 120.0,
    protocol: str = "grpc",
) -> PerfRun:
    """perf_analyzer at a fixed concurrency for exactly `request_count` requests (no stability
    search: the run is bounded in count, and `timeout_s` bounds it in time). `protocol` is its -i:
    "grpc" (address: the gRPC port) or "http" (address: the HTTP port, KServe v2 REST)."""
    installer = _installer()
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-run-") as tmp:
        export = Path(tmp) / "profile.json"
        args = [
            "-m",
            model,
            "-u",
            address,
            "-i",
            protocol,
            f"--service-kind={service_kind}",
            "--concurrency-range",
            f"{concurrency}:{concurrency}",
            "--request-count",
            str(request_count),
            "--profile-export-file",
            str(export),
            *extra,
        ]
        proc = subprocess.run(
            installer.command(args), env=installer.environment(), capture_output=True, text=True, timeout=timeout_s
        )
        requests = []
        if export.is_file():
            data = json.loads(export.read_text())
            for experiment in data.get("experiments", []):
                requests.extend(experiment.get("requests", []))
        return PerfRun(proc.returncode, proc.stdout + proc.stderr, requests)
