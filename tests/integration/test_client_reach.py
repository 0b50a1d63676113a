"""Reaching a server, or saying why not: `health --wait` right after starting one, and the wrong
port (nothing there, or the HTTP port) named as such instead of a bare DEADLINE_EXCEEDED.
The TLS cases are in test_client_security.py."""

from __future__ import annotations

import time

from tests.integration.test_cli import mnist_client
from tests.support.server_process import ServerProcess, free_port


def test_health_wait_follows_a_server_started_just_before(exported_model):
    with ServerProcess(["--model-dir", str(exported_model)], wait_ready=False) as server:
        started = time.monotonic()
        at_once = mnist_client("--target", server.target, "health")
        took = time.monotonic() - started
        waited = mnist_client("health", "--wait", "--target", server.target, "--timeout", "90")
    # The server is still importing TensorFlow: the default answers at once (a HEALTHCHECK's need).
    assert at_once.returncode == 1 and took < 5, (at_once.stdout, at_once.stderr)
    assert "connection refused (nothing listens there)" in at_once.stderr
    assert (waited.returncode, waited.stdout.strip()) == (0, "SERVING"), waited.stderr


def test_the_http_port_is_named_not_a_grpc_server_at_once(server):
    started = time.monotonic()
    result = mnist_client("--target", f"127.0.0.1:{server.http_port}", "--timeout", "30", "info")
    assert result.returncode == 1 and time.monotonic() - started < 10
    assert "not a gRPC server (it answered HTTP/1.1" in result.stderr, result.stderr
    health = mnist_client("health", "--target", f"127.0.0.1:{server.http_port}")
    assert health.returncode == 1 and "not a gRPC server (it answered HTTP/1.1" in health.stderr


def test_a_port_where_nothing_listens_is_named_after_the_wait():
    # A call waits for a server that may be starting; when the deadline passes it says why.
    result = mnist_client("--target", f"127.0.0.1:{free_port()}", "--timeout", "2", "info")
    assert result.returncode == 1
    assert "connection refused (nothing listens there) (waited 2 s)" in result.stderr, result.stderr
