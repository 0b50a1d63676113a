"""A server start prints our log, not TensorFlow's C++ start-up chatter: on a machine without a GPU
that chatter includes `failed call to cuInit ... (303)` at ERROR level, which alerts and people
read as a fault although `--device auto` is working as meant."""

from __future__ import annotations

import time

from tests.support.server_process import ServerProcess


def started_log(flags: list[str], timeout: float = 90.0) -> str:
    """The server's output from start until it listens (no model needed), then a SIGTERM."""
    with ServerProcess(flags, wait_ready=False) as server:
        deadline = time.monotonic() + timeout
        while "mnist_server.app: gRPC on" not in server.log_text():
            assert server.proc.poll() is None, server.log_tail()
            assert time.monotonic() < deadline, f"the server never listened:\n{server.log_tail()}"
            time.sleep(0.1)
        assert server.terminate() == 0
        return server.log_text()


def test_a_cpu_start_shows_our_log_and_not_tensorflows_cuda_probe(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # the server's default, not the caller's
    log = started_log(["--model-dir", str(tmp_path), "--device", "auto"])
    assert "mnist_server.runtime_tensorflow: TensorFlow" in log  # our own lines are all there
    assert "mnist_server.app: gRPC on" in log
    assert "cuInit" not in log and "cuda_platform.cc" not in log
    assert not [line for line in log.splitlines() if line.startswith("E0000")]  # no C++ ERROR lines
