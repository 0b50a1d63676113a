"""`mnist-client bench` for a few seconds against the real server (and the null server):
the JSON result has every field, with values that agree with each other and with the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.null_server import NullServerProcess

CONSOLE_SCRIPT = Path(sys.executable).parent / "mnist-client"
DURATION_S = 3.0


def bench(target: str, tmp_path: Path, *args: str) -> tuple[dict, subprocess.CompletedProcess]:
    result_file = tmp_path / "result.json"
    run = subprocess.run(
        [str(CONSOLE_SCRIPT), "--target", target, "bench", "--warmup", "0.5", "--json", str(result_file), *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(result_file.read_text()), run


def assert_sane(result: dict, batch: int) -> None:
    requests, latency = result["requests"], result["latency_ms"]
    assert requests["ok"] > 0 and requests["failed"] == 0 and result["errors"] == {}
    assert requests["total"] == requests["ok"]
    assert result["requests_per_s"] == pytest.approx(requests["ok"] / result["elapsed_s"])
    assert result["images_per_s"] == pytest.approx(result["requests_per_s"] * batch)
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert 0 < latency["mean"] <= latency["max"]
    assert result["client_cpu_us_per_request"] > 0
    assert result["config"]["batch"] == batch


def test_closed_loop_for_a_few_seconds(server, tmp_path):
    result, run = bench(server.target, tmp_path, "--duration", str(DURATION_S), "--concurrency", "4")
    assert_sane(result, batch=1)
    assert result["config"]["mode"] == "closed" and result["config"]["concurrency"] == 4
    # the measured window is the duration (plus the last answers), never less
    assert DURATION_S <= result["elapsed_s"] < DURATION_S + 5
    # a closed loop can't have more answers in flight than callers: latency bounds throughput
    assert result["requests_per_s"] <= 4 / (result["latency_ms"]["mean"] / 1000) * 1.05
    assert "measuring" in run.stderr  # live progress
    assert "throughput" in run.stdout and "p99" in run.stdout


def test_batches_over_a_stream_for_a_number_of_requests(server, tmp_path):
    result, _ = bench(
        server.target, tmp_path, "--requests", "120", "--stream", "--batch", "8", "--concurrency", "3", "--quiet"
    )
    assert_sane(result, batch=8)
    assert result["requests"]["ok"] == 120 and result["config"]["stream"] is True


def test_open_loop_sends_at_the_rate_asked(server, tmp_path):
    rate = 40
    result, _ = bench(
        server.target, tmp_path, "--rate", str(rate), "--duration", str(DURATION_S), "--concurrency", "16", "--quiet"
    )
    assert_sane(result, batch=1)
    assert result["config"]["mode"] == "open"
    # the schedule is fixed: rate x duration requests are sent, whatever the server does
    assert abs(result["requests"]["ok"] - rate * DURATION_S) <= 1


def test_real_images_encoded_as_png(server, synthetic_data_dir, tmp_path):
    result, _ = bench(
        server.target,
        tmp_path,
        "--requests",
        "40",
        "--encoding",
        "png",
        "--batch",
        "4",
        "--idx",
        str(synthetic_data_dir / "t10k-images-idx3-ubyte.gz"),
        "--quiet",
    )
    assert_sane(result, batch=4)
    assert result["config"]["images_source"].endswith("t10k-images-idx3-ubyte.gz")


def test_errors_are_counted_by_status_code(server, tmp_path):
    result_file = tmp_path / "result.json"
    run = subprocess.run(
        [
            str(CONSOLE_SCRIPT),
            "--target",
            server.target,
            "--model",
            "no-such-model",
            "bench",
            "--requests",
            "25",
            "--warmup",
            "0",
            "--quiet",
            "--json",
            str(result_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1  # nothing succeeded
    result = json.loads(result_file.read_text())
    assert result["requests"] == {"ok": 0, "failed": 25, "total": 25}
    assert result["errors"] == {"NOT_FOUND": 25}
    assert "NOT_FOUND 25" in run.stdout


def test_several_processes_share_the_work_against_the_null_server(tmp_path):
    with NullServerProcess() as null_server:
        result, _ = bench(
            null_server.target,
            tmp_path,
            "--requests",
            "600",
            "--processes",
            "2",
            "--concurrency",
            "8",
            "--connections",
            "2",
            "--quiet",
        )
    assert_sane(result, batch=1)
    assert result["requests"]["ok"] == 600 and result["config"]["processes"] == 2


def test_an_unreachable_target_is_an_error(tmp_path):
    from tests.support.server_process import free_port

    run = subprocess.run(
        [
            str(CONSOLE_SCRIPT),
            "--target",
            f"127.0.0.1:{free_port()}",
            "--timeout",
            "2",
            "bench",
            "--requests",
            "5",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1 and "cannot connect" in run.stderr
