"""ServerProcess: the real `mnist-server` as a subprocess on free loopback ports.

    with ServerProcess(["--model-dir", str(base)]) as server:
        channel = grpc.insecure_channel(server.target)
        ...
        assert server.terminate() == 0   # SIGTERM, drain, exit code

It waits until /readyz answers 200 (bounded; the server's log is in the failure message) and
always kills the process on exit.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]  # `python -m tests.support...` resolves from here


def served_runtime() -> str:
    """What computes a version with model.tflite in a server started without --runtime: `make
    runtimes` forces one through MNIST_SERVER_RUNTIME; the default, auto, runs both."""
    runtime = os.environ.get("MNIST_SERVER_RUNTIME", "auto")
    return "litert+tensorflow" if runtime == "auto" else runtime


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; HTTP errors are returned, not raised. An https URL (a server with
    --tls-cert) is read without checking the certificate: readiness and metrics, on loopback."""
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class ServerProcess:
    def __init__(
        self,
        flags: list[str],
        env: dict | None = None,
        *,
        ready_timeout: float = 90.0,
        wait_ready: bool = True,
        module: str = "mnist_server",
    ):
        """`module`: what `python -m` runs, mnist-server itself or a test's variant of it
        (tests/support/fake_model_server.py), given the same flags."""
        self.flags = list(flags)
        self.module = module
        self.env = env
        self.ready_timeout = ready_timeout
        self.wait_ready = wait_ready
        self.port = free_port()
        self.http_port = free_port()
        while self.http_port == self.port:
            self.http_port = free_port()
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._final_log = ""

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def http_url(self) -> str:
        scheme = "https" if "--tls-cert" in self.flags else "http"  # the HTTP port has the gRPC port's TLS
        return f"{scheme}://{HOST}:{self.http_port}"

    def log_text(self) -> str:
        if self._log_file is None:
            return ""
        if self._log_file.closed:  # stop() kept the text and removed the file
            return self._final_log
        return Path(self._log_file.name).read_text(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the log: enough to explain a failed assertion without burying it."""
        return self.log_text()[-chars:]

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        self._log_file = tempfile.NamedTemporaryFile(prefix="mnist-server-", suffix=".log", delete=False)
        cmd = [
            sys.executable,
            "-m",
            self.module,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--http-port",
            str(self.http_port),
            *self.flags,
        ]
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=self._log_file, stderr=subprocess.STDOUT, env=env)
        if self.wait_ready:
            try:
                self.wait_until_ready(self.ready_timeout)
            except BaseException:
                self.stop()
                raise

    def wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mnist-server exited with {self.proc.returncode} before it was ready:\n{self.log_text()[-6000:]}"
                )
            try:
                if http_get(self.http_url + "/readyz", timeout=1.0)[0] == 200:
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(0.05)
        raise TimeoutError(f"mnist-server not ready within {timeout}s:\n{self.log_text()[-6000:]}")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Sends `sig` and waits for the exit code (kills after `timeout`, then raises)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TimeoutError(
                f"mnist-server did not exit within {timeout}s after {sig!r}:\n{self.log_text()[-6000:]}"
            ) from None

    def stop(self) -> None:
        """Always leaves no process behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log_file is not None and not self._log_file.closed:
            self._final_log = Path(self._log_file.name).read_text(errors="replace")
            self._log_file.close()
            Path(self._log_file.name).unlink(missing_ok=True)


def scrape_metrics(http_url: str) -> dict[tuple[str, tuple], float]:
    """Every sample on /metrics: {(name, sorted label items): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = http_get(http_url + "/metrics")
    assert status == 200, f"/metrics answered {status}"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(value for (sample_name, items), value in samples.items() if sample_name == name and wanted <= set(items))


def wait_for_queue_depth(http_url: str, at_least: float, what: str, timeout_s: float = 10.0) -> float:
    """Polls /metrics until `mnist_serving_queue_depth` (all models) is at least `at_least`; returns the
    depth seen. After `timeout_s`, fails with `what` (what never happened) and the last depth."""
    give_up = time.monotonic() + timeout_s
    while (depth := metric(scrape_metrics(http_url), "mnist_serving_queue_depth")) < at_least:
        assert time.monotonic() < give_up, f"{what}: queue depth {depth:.0f} after {timeout_s:.0f} s, wanted {at_least}"
        time.sleep(0.005)
    return depth
