"""Scale-out without containers: Debian's nginx, running the project's own load-balancer config
(deploy/nginx/templates/default.conf.template, upstreams pointed at loopback ports), in front of three
real mnist-server processes, called with the real client.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from mnist_client import ClientError, MnistClient
from mnist_client.channel import DEFAULT_RETRIES
from tests.support.server_process import HOST, ServerProcess, free_port, http_get

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "templates" / "default.conf.template"
REPLICAS = 3
CLASSIFY_METHOD = "mnist_serving.v1.Classifier/Classify"

pytestmark = pytest.mark.slow


def _upstream_lines(text: str, variable: str, ports: list[int]) -> str:
    upstream = re.search(r"^(\s*)server \$\{" + variable + r"\}(.*);$", text, re.MULTILINE)
    assert upstream, f"the template lost its `server ${{{variable}}} ...;` line"
    indent, params = upstream.groups()
    lines = "\n".join(f"{indent}server {HOST}:{port}{params};" for port in ports)
    return text[: upstream.start()] + lines + text[upstream.end() :]


def render_lb_config(upstream_ports: list[int], listen: str, http_ports: list[int], http_listen: str) -> str:
    """What the nginx image's entrypoint renders, with one upstream line per loopback replica
    (compose gets the replicas from one service name instead)."""
    text = _upstream_lines(TEMPLATE.read_text(), "MNIST_UPSTREAM", upstream_ports)
    text = _upstream_lines(text, "MNIST_HTTP_UPSTREAM", http_ports)
    text = text.replace("${MNIST_LB_LISTEN}", listen).replace("${MNIST_LB_HTTP_LISTEN}", http_listen)
    directives = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    leftover = re.findall(r"\$\{\w+\}", directives)
    assert not leftover, f"template variables the test does not set: {leftover}"
    return text


class Nginx:
    """Debian's nginx in the foreground with a private prefix, pid file and temp paths."""

    def __init__(self, site_config: str, workdir: Path, port: int):
        self.workdir = workdir
        self.port = port
        (workdir / "logs").mkdir()
        (workdir / "lb.conf").write_text(site_config)
        # The image's nginx.conf part: everything outside http{} is the packaging's, not the project's.
        (workdir / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    include {workdir}/lb.conf;
}}
""")
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "nginx.out"

    def check(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.binary(), "-t", "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf")],
            capture_output=True,
            text=True,
            timeout=30,
        )

    @staticmethod
    def binary() -> str:
        path = shutil.which("nginx") or "/usr/sbin/nginx"
        assert Path(path).exists(), "Debian's nginx is missing: make system-deps"
        return path

    def __enter__(self) -> Nginx:
        checked = self.check()
        assert checked.returncode == 0, checked.stderr
        with open(self.log_path, "ab") as log:  # append: the access log (O_APPEND) shares the file
            self.proc = subprocess.Popen(
                [self.binary(), "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def __exit__(self, *exc_info) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def classify_calls_served(server: ServerProcess) -> float:
    """Successful Classify calls this replica counted itself (its /metrics)."""
    status, body = http_get(server.http_url + "/metrics")
    assert status == 200
    total = 0.0
    for line in body.splitlines():
        if (
            line.startswith("mnist_serving_requests_total{")
            and f'method="{CLASSIFY_METHOD}"' in line
            and 'code="OK"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def replicas(exported_model):
    """Three replicas for the module; a test that stops one starts it again on the same ports."""
    servers = [ServerProcess(["--model-dir", str(exported_model)]) for _ in range(REPLICAS)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def load_balancer(replicas, tmp_path_factory):
    port, http_port = free_port(), free_port()
    config = render_lb_config(
        [s.port for s in replicas], f"{HOST}:{port}", [s.http_port for s in replicas], f"{HOST}:{http_port}"
    )
    with Nginx(config, tmp_path_factory.mktemp("nginx"), port) as nginx:
        nginx.http_port = http_port
        deadline = time.monotonic() + 20
        while True:  # listening and forwarding?
            with MnistClient(f"{HOST}:{port}", timeout=2, retries=0, health_check=False) as client:
                try:
                    if client.health(timeout=2) == "SERVING":
                        break
                except Exception:  # noqa: BLE001 - not up yet
                    pass
            assert nginx.proc.poll() is None, nginx.log_text()
            assert time.monotonic() < deadline, nginx.log_text()
            time.sleep(0.1)
        yield nginx


def digits(count: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(count, 28, 28), dtype=np.uint8)


def test_rendered_config_is_what_the_template_says():
    text = render_lb_config([1001, 1002, 1003], "127.0.0.1:9999", [2001, 2002, 2003], "127.0.0.1:9998")
    assert "listen 127.0.0.1:9999 http2;" in text
    assert "listen 127.0.0.1:9998;" in text
    assert re.findall(r"server 127\.0\.0\.1:(\d+) max_fails=1 fail_timeout=5s;", text) == [
        "1001",
        "1002",
        "1003",
        "2001",
        "2002",
        "2003",
    ]


def test_calls_through_nginx_reach_every_replica(replicas, load_balancer):
    before = [classify_calls_served(s) for s in replicas]
    with MnistClient(f"{HOST}:{load_balancer.port}", timeout=10) as client:
        for _ in range(30):
            assert len(client.classify(digits(1))) == 1
    served = [classify_calls_served(s) - b for s, b in zip(replicas, before)]
    assert sum(served) == 30
    assert all(n > 0 for n in served), served


def test_http_requests_through_nginx_reach_every_replica(replicas, load_balancer):
    """The REST APIs and the page behind the same balancer, on its HTTP port."""

    def predicted(server: ServerProcess) -> float:
        body = http_get(server.http_url + "/metrics")[1]
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith("mnist_serving_http_requests_total{") and ":predict" in line and 'status="200"' in line
        )

    before = [predicted(s) for s in replicas]
    body = json.dumps({"instances": digits(2).tolist()}).encode()
    url = f"http://{HOST}:{load_balancer.http_port}/v1/models/mnist:predict"
    for _ in range(30):
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert len(json.loads(response.read())["predictions"]) == 2
    served = [predicted(s) - b for s, b in zip(replicas, before)]
    assert sum(served) == 30
    assert all(n > 0 for n in served), served
    assert http_get(f"http://{HOST}:{load_balancer.http_port}/")[0] == 200


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "drained"])
def test_losing_a_replica_mid_load_costs_no_call(replicas, load_balancer, sig):
    """SIGKILL: calls in flight on the replica break (nginx answers them UNAVAILABLE, Trailers-Only)
    and the client retries them;
    SIGTERM: the replica drains for its default 20 s grace period (compose/Kubernetes scale-down)
    while the others take the calls. Either way no call fails."""
    calls, workers = 600, 4
    victim = replicas[1]
    done = 0
    done_lock = threading.Lock()
    victim_served: list[float] = []
    failures: list[BaseException] = []

    with MnistClient(f"{HOST}:{load_balancer.port}", timeout=10) as client:
        # A replica restarted by the previous test is back in nginx's rotation only after the
        # upstream's fail_timeout: wait (bounded) until calls reach it again.
        back_by = time.monotonic() + 30
        while classify_calls_served(victim) == 0 and time.monotonic() < back_by:
            client.classify(digits(4))

        def one_call(_):
            nonlocal done
            try:
                assert len(client.classify(digits(4))) == 4
            except BaseException as error:  # noqa: BLE001 - every failure is counted and reported
                failures.append(error)
            with done_lock:
                done += 1
                if done == calls // 3:  # the other workers' calls are in flight
                    victim_served.append(classify_calls_served(victim))
                    victim.proc.send_signal(sig)

        log_start = len(load_balancer.log_text())
        started = time.monotonic()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one_call, range(calls), timeout=300))
        elapsed = time.monotonic() - started

    try:
        assert victim_served and victim_served[0] > 0, "the replica got no calls before it went"
        assert victim.proc.wait(30) == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
        assert failures == [], (
            f"{len(failures)} of {calls} calls failed, first: {failures[0]!r}\n{load_balancer.log_text()[-3000:]}"
        )
        survivors = [classify_calls_served(s) for s in (replicas[0], replicas[2])]
        assert all(n > 0 for n in survivors), survivors
        cut = len(re.findall(r'" 204 .* upstream_status=502', load_balancer.log_text()[log_start:]))
        print(
            f"{calls} calls in {elapsed:.1f} s through nginx, replica {sig.name}, 0 failed "
            f"({cut} attempts cut by the replica's death, retried by the client)"
        )
    finally:
        victim.stop()
        victim.start()  # for the next test (even after a failure), on the same ports nginx knows


class DyingReplica:
    """A listener that reads a call's request and then resets the connection: a replica killed
    after nginx sent it the call, every time, so nginx can never pass the call on."""

    def __init__(self):
        self.sock = socket.create_server((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DyingReplica:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close() alone does not)
        self.thread.join(10)
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)  # nginx's preface and the call: nginx has sent the request
                except OSError:
                    pass
                # SO_LINGER 0: close() sends RST, as the kernel does for a killed process's sockets.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_call_cut_by_a_dying_replica_is_retried_by_the_client(tmp_path):
    """nginx cannot pass on a call whose request already went to a replica that then died (gRPC
    request bodies are not buffered). It must fail it as a gRPC status the client retries, not
    with HTTP 502, whose response headers commit the call (gRFC A6): then no client retry happens."""
    calls = 8
    with DyingReplica() as replica:
        port = free_port()
        config = render_lb_config([replica.port], f"{HOST}:{port}", [free_port()], f"{HOST}:{free_port()}")
        with Nginx(config, tmp_path, port) as nginx:
            deadline = time.monotonic() + 20
            while True:  # listening?
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    break
                except OSError:
                    assert nginx.proc.poll() is None, nginx.log_text()
                    assert time.monotonic() < deadline, nginx.log_text()
                    time.sleep(0.1)
            errors: list[ClientError] = []
            with MnistClient(f"{HOST}:{port}", timeout=10) as client:  # DEFAULT_RETRIES

                def one_call(_):
                    with pytest.raises(ClientError) as raised:
                        client.classify(digits(1))
                    errors.append(raised.value)

                with ThreadPoolExecutor(calls) as pool:  # the retries' back-off waits overlap
                    list(pool.map(one_call, range(calls), timeout=120))
            log = nginx.log_text()
    assert [e.code for e in errors] == [grpc.StatusCode.UNAVAILABLE] * calls, errors
    assert all("no replica could answer the call" in e.details for e in errors), errors
    attempts = re.findall(
        r'"POST /mnist_serving\.v1\.Classifier/Classify HTTP/2\.0" (\d+) .*'
        r"upstream_status=(\S+)",
        log,
    )
    # Every attempt failed as UNAVAILABLE (never an HTTP 502) and the client made all of each call's.
    assert attempts == [("204", "502")] * ((1 + DEFAULT_RETRIES) * calls), log[-3000:]
