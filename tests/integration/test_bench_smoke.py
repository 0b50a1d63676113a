"""The benchmark harness end to end, briefly: `python -m benchmarks.run --quick` really starts the
null server, the naive baseline and our server (with each runtime), times their cold starts and
memory, measures the compute ceiling per runtime, drives the servers with `mnist-client bench`,
perf_analyzer (over gRPC and HTTP), the TF Serving load generator and the REST one (benchmarks/rest_load.py),
profiles with py-spy, soaks, and writes the JSON,
the Markdown block and the PNG. No timing is asserted: only that every phase measured something
and the outputs are whole. The naive baseline is also checked to give the same answers as our
server (it does the same work, honestly)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.processes import ServerProcess as BenchServer
from benchmarks.processes import naive
from benchmarks.report import BEGIN, END
from mnist_client import MnistClient
from mnist_client.bench import random_digits
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

TRAINING_SECTION = "## Training\n\nWritten by the trainer engineer; the harness must keep it.\n"


def test_quick_run_measures_every_configuration_and_writes_table_json_and_plot(exported_model, tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nIntro kept.\n\n{BEGIN}\nstale table\n{END}\n\n{TRAINING_SECTION}")
    results_path, plot = tmp_path / "results.json", tmp_path / "images" / "plot.png"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--model-dir",
            str(exported_model),
            "--results",
            str(results_path),
            "--doc",
            str(doc),
            "--plot",
            str(plot),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(results_path.read_text())

    kinds = {info["kind"] for info in results["servers"].values()}
    assert kinds == {"null", "naive", "ours"}
    for label, info in results["servers"].items():
        assert info["ready_s"] > 0, label
        points = results["closed"][label]
        assert points, f"{label} was not measured"
        for key, rounds in points.items():
            for sample in rounds:
                assert sample["failed"] == 0, (label, key, sample["errors"])
                assert sample["ok"] > 0 and sample["images_per_s"] > 0, (label, key)
                assert 0 < sample["p50_ms"] <= sample["p99_ms"], (label, key)
    assert {"TensorFlow", "LiteRT 1 thread"} <= set(results["compute"]) and len(results["compute"]) == 3
    for runtime, batches in results["compute"].items():
        assert set(batches) == {"b1", "b64"}, runtime
        assert all(r["images_per_s"] > 0 for rounds in batches.values() for r in rounds), runtime
    runtimes = {label: info["runtime"] for label, info in results["servers"].items() if info["kind"] == "ours"}
    assert runtimes["ours, TensorFlow runtime"] == "tensorflow" and runtimes["ours, LiteRT runtime"] == "litert"
    assert all(runtimes.values()), runtimes  # read from every server's /metrics
    assert {label for label in results["open"]} >= {"naive", "ours"}
    for label, samples in results["open"].items():
        for sample in samples:
            assert sample["ok"] > 0 and sample["failed"] == 0, (label, sample["rate"], sample["errors"])

    for key, sample in results["perf_analyzer"].items():
        assert "error" not in sample and sample["images_per_s"] > 0, (key, sample.get("error"))
    protocols = results["protocols"]["protocols"]
    transports = results["protocols"]["transports"]
    assert len(protocols) == 7 and set(transports) == set(protocols)
    rest_doors = {protocol for protocol, over in transports.items() if over == "HTTP"}
    assert rest_doors == {"KServe v2 REST", "TF Serving REST, instances", "our API REST, JSON"}
    for protocol, points in protocols.items():
        assert set(points) == {"c64 b1", "c1 b1"}, protocol
        for key, rounds in points.items():
            for sample in rounds:
                assert "error" not in sample, (protocol, key, sample.get("error"))
                assert sample["images_per_s"] > 0 and sample["server_cpu_us_per_request"] > 0, (protocol, key)
                # the server counted the door's requests (HTTP ones in http_requests_total), none of ours lost
                assert sample["server_requests"] >= sample.get("requests", 1), (protocol, key)
                if "ok" in sample and protocol in rest_doors:  # rest_load's own count: every answer a 200
                    assert sample["ok"] > 0 and sample["failed"] == 0, (protocol, key, sample["errors"])
    footprint = results["footprint"]
    assert set(footprint["servers"]) == {"ours", "ours, TensorFlow runtime", "ours, LiteRT runtime"}
    for label, measured in footprint["servers"].items():
        assert measured["runtime"] and len(measured["starts_s"]) == 1, label
        assert measured["rss_mb"]["median"] >= measured["pss_mb"]["median"] > 0, label
    assert set(footprint["probes"]) == {"LiteRT only", "LiteRT + import tensorflow"}
    assert all(
        probe["ready_s"]["median"] > 0 and probe["pss_mb"]["median"] > 0 for probe in footprint["probes"].values()
    )
    for recording in results["profile"]["recordings"]:
        assert "error" not in recording, recording.get("error")
        assert recording["samples"] > 0 and recording["top_self"], recording["kind"]
    assert len(results["soak"]["rss_samples"]) >= 3 and results["soak"]["growth_pct"] is not None
    assert len(results["ready"]["starts_s"]) == 1
    assert len(results["targets"]) == 10
    assert all(isinstance(t["met"], bool) for t in results["targets"]), results["targets"]

    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nIntro kept.") and text.endswith(TRAINING_SECTION)
    assert "stale table" not in text and text.count(BEGIN) == 1 and text.count(END) == 1
    assert "### Targets" in text and "](images/plot.png)" in text
    for table in (
        "### Compute ceiling per runtime",
        "### Server CPU per request, by protocol",
        "### Start-up and memory per runtime",
    ):
        assert table in text
    for label in results["servers"]:
        assert f"| {label} (" in text
    for door in rest_doors:
        assert f"| {door} | HTTP |" in text
    assert text.count("What HTTP costs per request at ") == 2  # REST over gRPC, one sentence per point
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_naive_baseline_answers_like_our_server(exported_model, server, tmp_path):
    images = random_digits(count=16, seed=3)
    baseline = BenchServer(naive(exported_model), tmp_path / "naive.log").start()
    try:
        with MnistClient(baseline.target) as client:
            theirs = client.classify(images)
    finally:
        baseline.stop()
    with MnistClient(server.target) as client:
        ours = client.classify(images)
    assert [p.label for p in theirs] == [p.label for p in ours]
    np.testing.assert_allclose([p.probabilities for p in theirs], [p.probabilities for p in ours], atol=1e-5)
