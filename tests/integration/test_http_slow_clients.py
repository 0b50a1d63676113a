"""Slow and hostile HTTP clients against the real server: hundreds of connections that send half a
request, a body that never completes, answers nobody reads, more connections than the limit, an
oversize body. Each has a bound that can fail: the probes and the gRPC port keep answering, no
thread per connection, memory bounded, every such connection closed within its timeout."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.server_process import HOST, ServerProcess, http_get, metric, scrape_metrics

IDLE_TIMEOUT_S = 3.0
BODY_TIMEOUT_S = 3.0
HOSTILE = 300  # connections per attack; under the default limit of 1024
PROBE_BOUND_S = 2.0  # a probe slower than this while under attack is starved
PIPELINED = 8  # /metrics answers per connection: more than the socket buffers hold
MEMORY_BOUND_MB = 60.0  # growth of the server's resident memory while HOSTILE connections hang


@pytest.fixture(scope="module")
def server(exported_model):
    flags = [
        "--model-dir",
        str(exported_model),
        "--http-idle-timeout",
        str(IDLE_TIMEOUT_S),
        "--http-body-timeout",
        str(BODY_TIMEOUT_S),
    ]
    with ServerProcess(flags) as proc:
        yield proc


def status_field(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection((HOST, server.http_port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that takes little at a time
    return sock


def assert_probes_answer(server: ServerProcess) -> None:
    started = time.monotonic()
    assert http_get(server.http_url + "/readyz", timeout=PROBE_BOUND_S)[0] == 200
    assert http_get(server.http_url + "/healthz", timeout=PROBE_BOUND_S)[0] == 200
    with grpc.insecure_channel(server.target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=PROBE_BOUND_S)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert time.monotonic() - started < 3 * PROBE_BOUND_S


def closed_by_server(sock: socket.socket, within_s: float) -> tuple[bool, bytes]:
    """(True, what arrived) when the server closed the connection within `within_s`."""
    sock.settimeout(0.2)
    received = b""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


def all_closed(socks: list[socket.socket], within_s: float) -> list[bytes]:
    deadline = time.monotonic() + within_s
    answers = []
    for sock in socks:
        closed, received = closed_by_server(sock, max(0.5, deadline - time.monotonic()))
        assert closed, f"a hostile connection was still open {within_s:.0f} s after it started"
        answers.append(received)
        sock.close()
    return answers


def wait_until_answered(server: ServerProcess, route: str, count: int, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            samples = scrape_metrics(server.http_url)
        except OSError:  # busy producing the answers
            continue
        if metric(samples, "mnist_serving_http_requests_total", route=route) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} requests to {route} not answered within {within_s} s")


def baseline(server: ServerProcess) -> tuple[int, int]:
    pid = server.proc.pid
    return status_field(pid, "Threads"), status_field(pid, "VmRSS")


def assert_bounded(server: ServerProcess, before: tuple[int, int]) -> None:
    threads, rss_kb = baseline(server)
    assert threads <= before[0] + 2, f"threads grew from {before[0]} to {threads} with {HOSTILE} connections"
    grown_mb = (rss_kb - before[1]) / 1024
    assert grown_mb < MEMORY_BOUND_MB, f"resident memory grew {grown_mb:.0f} MB with {HOSTILE} hostile connections"


def test_half_sent_headers_do_not_starve_the_probes_and_are_closed(server):
    before = baseline(server)
    socks = []
    for index in range(HOSTILE):
        sock = connect(server)
        sock.sendall(f"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\nX-Slow-{index}: ".encode())
        socks.append(sock)
    opened = time.monotonic()
    assert_probes_answer(server)
    assert metric(scrape_metrics(server.http_url), "mnist_serving_http_connections") >= HOSTILE
    assert_bounded(server, before)
    all_closed(socks, IDLE_TIMEOUT_S + 4 - (time.monotonic() - opened))
    assert_probes_answer(server)


def test_a_body_that_never_completes_gets_408_within_the_body_timeout(server):
    before = baseline(server)
    socks = []
    for _ in range(HOSTILE // 3):
        sock = connect(server)
        sock.sendall(
            b"POST /api/v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000\r\n\r\n{"images": ['
        )
        socks.append(sock)
    opened = time.monotonic()
    assert_probes_answer(server)
    assert_bounded(server, before)
    answers = all_closed(socks, BODY_TIMEOUT_S + 4 - (time.monotonic() - opened))
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"did not arrive within 3 s (--http-body-timeout)" in answer
    assert_probes_answer(server)


def test_answers_nobody_reads_drop_the_connection_within_the_body_timeout(server):
    """Each connection asks for /metrics 8 times in one write (pipelined) and reads nothing: the
    answers fill the socket buffers, and the server gives up on the connection (send timeout, or idle
    timeout once everything is buffered) instead of holding it. Producing 240 scrapes costs a few
    seconds of CPU on 2 cores; the probes are checked once that is done, while the readers hang."""
    before = baseline(server)
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * PIPELINED
    socks = []
    for _ in range(HOSTILE // 10):
        sock = connect(server)
        sock.sendall(request)
        socks.append(sock)
    wait_until_answered(server, "GET /metrics", len(socks) * PIPELINED)
    assert_probes_answer(server)
    assert_bounded(server, before)
    answered = time.monotonic()
    bound = IDLE_TIMEOUT_S + BODY_TIMEOUT_S + 2  # idle after the last answer, then unflushed for the body timeout
    open_now = HOSTILE
    while time.monotonic() - answered < bound and open_now > 2:
        time.sleep(0.5)
        open_now = metric(scrape_metrics(server.http_url), "mnist_serving_http_connections")
    assert open_now <= 2, f"{open_now:.0f} connections still open {bound:.0f} s after their answers"
    for sock in socks:
        sock.close()


def test_connections_beyond_the_limit_get_503_at_once(exported_model):
    limit = 20
    flags = ["--model-dir", str(exported_model), "--http-max-connections", str(limit)]
    with ServerProcess(flags) as server:
        time.sleep(0.5)  # the readiness poll's own connection closes
        held = [connect(server) for _ in range(limit)]
        extra = [connect(server) for _ in range(5)]
        for sock in extra:
            closed, answer = closed_by_server(sock, 2.0)
            assert closed and answer.startswith(b"HTTP/1.1 503 "), answer[:200]
            assert b"too many open connections (--http-max-connections)" in answer
            sock.close()
        for sock in held:
            sock.close()
        time.sleep(0.5)
        assert http_get(server.http_url + "/readyz")[0] == 200
        refused = metric(scrape_metrics(server.http_url), "mnist_serving_http_connections_refused_total")
        assert refused >= 5


def test_a_body_over_the_limit_is_refused_before_it_is_sent(exported_model):
    limit = 64 * 1024
    with ServerProcess(["--model-dir", str(exported_model), "--max-receive-message-bytes", str(limit)]) as server:
        sock = connect(server)
        # declares 100 MB and sends none of it: the answer must come from the headers alone
        sock.sendall(
            b"POST /api/v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000000\r\n\r\n"
        )
        closed, answer = closed_by_server(sock, 5.0)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert f"larger than the limit of {limit} bytes (--max-receive-message-bytes)".encode() in answer
        assert http_get(server.http_url + "/readyz")[0] == 200
