"""server/scripts/grpc_call.py, the grpcurl stand-in: `list`, `list SERVICE` and calls, by reflection only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "server" / "scripts" / "grpc_call.py"
CLASSIFIER = "mnist_serving.v1.Classifier"


def grpc_call(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_list_names_the_services(server):
    result = grpc_call(server.target, "list")
    assert result.returncode == 0, result.stderr
    services = result.stdout.split()
    assert {CLASSIFIER, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= set(services)
    assert services == sorted(services)


def test_list_service_names_its_methods(server):
    result = grpc_call(server.target, "list", CLASSIFIER)
    assert result.returncode == 0, result.stderr
    assert {f"{CLASSIFIER}.Classify", f"{CLASSIFIER}.ClassifyStream", f"{CLASSIFIER}.GetModelInfo"} <= set(
        result.stdout.split()
    )
    unknown = grpc_call(server.target, "list", "no.such.Service")
    assert unknown.returncode == 1 and "no.such.Service" in unknown.stderr


def test_a_call_still_prints_the_response(server):
    result = grpc_call(server.target, f"{CLASSIFIER}/GetModelInfo", "{}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "mnist"
