"""The servers under test as child processes: start, time to ready, CPU and memory, stop.

Every server (null, naive, ours) is started the same way and declared ready on its first
answered Classify, so "time to ready" means the same thing for all of them.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import procfs
from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc as pb_grpc

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_LINE = re.compile(r"listening on (\S+):(\d+)")
PROBE_RETRY_S = 0.05
METRICS_PREFIX = "mnist_serving_"
BATCH_COUNTERS = (
    "batch_size_count",
    "batch_size_sum",
    "compute_seconds_sum",
    "queue_wait_seconds_sum",
    "queue_wait_seconds_count",
)
STOP_TIMEOUT_S = 15.0
# Routes the harness itself calls on our HTTP port (mnist_serving_http_requests_total's `route` label)
HARNESS_ROUTES = frozenset({"GET /metrics", "GET /metrics/"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class ServerSpec:
    """How to start one configuration. `module` runs as `python -m module *args`; servers
    that print "listening on HOST:PORT" get `--port 0`, ours gets free ports."""

    label: str
    kind: str  # "null", "naive" or "ours": which reference it is compared with
    module: str
    args: tuple[str, ...] = ()
    prints_port: bool = True
    note: str = ""
    all_points: bool = False  # a variant of ours measured at every closed-loop point, not only VARIANT_POINTS

    @property
    def slug(self) -> str:
        """The label as a file name."""
        return self.label.replace(" ", "_").replace(",", "")


def ours(label: str, model_dir: Path, *flags: str, note: str = "", all_points: bool = False) -> ServerSpec:
    return ServerSpec(
        label,
        "ours",
        "mnist_server",
        ("--model-dir", str(model_dir), *flags),
        prints_port=False,
        note=note,
        all_points=all_points,
    )


def naive(model_dir: Path) -> ServerSpec:
    return ServerSpec(
        "naive",
        "naive",
        "benchmarks.naive_server",
        ("--model-dir", str(model_dir)),
        note="sync gRPC, 10 threads, one model call per request",
    )


def null() -> ServerSpec:
    return ServerSpec(
        "rpc ceiling", "null", "benchmarks.null_server", (), note="asyncio gRPC, canned answers, no model"
    )


@dataclass
class ServerProcess:
    spec: ServerSpec
    log_path: Path
    target: str = ""
    ready_s: float | None = None
    proc: subprocess.Popen[str] | None = field(default=None, repr=False)
    _port_found: threading.Event = field(default_factory=threading.Event, repr=False)
    _launched: float = field(default=0.0, repr=False)
    http_port: int | None = None  # ours: /metrics, for batch sizes and model busy time

    def start(self, timeout: float = 120.0) -> ServerProcess:
        """Starts the server and returns once it answered a Classify; records `ready_s`."""
        return self.launch().wait_ready(timeout)

    def launch(self) -> ServerProcess:
        """Starts the process without waiting (start several, then wait for each)."""
        args = list(self.spec.args)
        if self.spec.prints_port:
            args += ["--host", "127.0.0.1", "--port", "0"]
        else:
            port, self.http_port = free_port(), free_port()
            args += ["--host", "127.0.0.1", "--port", str(port), "--http-port", str(self.http_port)]
            self.target = f"127.0.0.1:{port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._launched = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.spec.module, *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._drain_output, daemon=True).start()
        return self

    def wait_ready(self, timeout: float = 120.0) -> ServerProcess:
        """Returns once the server answered a Classify; `ready_s` counts from `launch`."""
        deadline = self._launched + timeout
        try:
            if self.spec.prints_port and not self._port_found.wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"{self.spec.label}: no 'listening on' line within {timeout:.0f} s")
            self._first_answer(deadline)
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.monotonic() - self._launched
        return self

    def _drain_output(self) -> None:
        """Copies the server's output to its log (a full pipe would block the server)."""
        assert self.proc is not None and self.proc.stdout is not None  # launch() set it, stdout=PIPE
        with open(self.log_path, "w") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                match = READY_LINE.search(line)
                if match and not self._port_found.is_set():
                    self.target = f"{match.group(1)}:{match.group(2)}"
                    self._port_found.set()

    def _first_answer(self, deadline: float) -> None:
        """Waits (gRPC wait_for_ready, no sleep loop) until one Classify of one image succeeds."""
        request = pb.ClassifyRequest(packed=pb.PackedImages(data=bytes(784), count=1, height=28, width=28))
        # gRPC's reconnect backoff (1 s, then x1.6 with jitter) would round "ready" up to its next
        # attempt: 2.6 s, 4.2 s, 6.8 s... whatever the server's real start. Retry every 20 ms instead.
        backoff = [(f"grpc.{name}_reconnect_backoff_ms", 20) for name in ("initial", "min", "max")]
        assert self.proc is not None  # launch() set it
        with grpc.insecure_channel(self.target, options=backoff) as channel:
            stub = pb_grpc.ClassifierStub(channel)
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.spec.label} exited with {self.proc.returncode}; see {self.log_path}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"{self.spec.label} not ready in time; see {self.log_path}")
                try:
                    stub.Classify(request, timeout=min(remaining, 5.0), wait_for_ready=True)
                    return
                except grpc.RpcError as error:
                    # UNAVAILABLE: listening but no model yet; DEADLINE: still starting.
                    if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise RuntimeError(
                            f"{self.spec.label}: first Classify failed: {error.code().name} {error.details()}"
                        ) from None
                    time.sleep(PROBE_RETRY_S)  # a failed probe returned at once: do not spin

    def metrics(self) -> list | None:
        """Our server's /metrics as (name, labels, value) samples; None for servers without it."""
        if self.http_port is None:
            return None
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return [
            (sample.name.removeprefix(METRICS_PREFIX), sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.startswith(METRICS_PREFIX)
        ]

    def batching_counters(self) -> dict[str, float] | None:
        """Our server's cumulative batch metrics (None for servers without /metrics)."""
        samples = self.metrics()
        if samples is None:
            return None
        return {name: sum(value for sample, _, value in samples if sample == name) for name in BATCH_COUNTERS}

    def requests_finished(self) -> float | None:
        """Requests our server has finished so far on both ports, every method, route and status:
        gRPC calls (requests_total) plus HTTP requests (http_requests_total), less the harness's own
        /metrics scrapes (HARNESS_ROUTES), which every door's measurement makes alike. None for
        servers without /metrics."""
        samples = self.metrics()
        if samples is None:
            return None
        return sum(
            value
            for name, labels, value in samples
            if name == "requests_total" or (name == "http_requests_total" and labels.get("route") not in HARNESS_ROUTES)
        )

    def model_runtimes(self) -> list[str]:
        """What computes the loaded versions (mnist_serving_model_runtime_info), e.g. ["litert+tensorflow"]."""
        return sorted(
            {
                labels["runtime"]
                for name, labels, value in self.metrics() or []
                if name == "model_runtime_info" and value and "runtime" in labels
            }
        )

    @property
    def http_target(self) -> str:
        """Our server's HTTP port as HOST:PORT (ours only: the others have no HTTP port)."""
        if self.http_port is None:
            raise ValueError(f"{self.spec.label} has no HTTP port")
        return f"127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.spec.label} was not launched"
        return self.proc.pid

    def rss_bytes(self) -> int:
        return procfs.rss_bytes(self.pid)

    def pss_bytes(self) -> int:
        return procfs.pss_bytes(self.pid)

    def cpu_seconds(self) -> float:
        return procfs.cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
