"""Every Prometheus metric, defined once (web/probes.py serves them on /metrics).

Base units (seconds, images), low-cardinality labels: `method` is the full gRPC method name,
`route` an HTTP method plus route template (`POST /v1/models/{model}:predict`), `model` a configured
model name (or "none" when the request named no served model), `code` the gRPC status code name,
`status` the HTTP status.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from .batcher import BatchObserver
from .repository import RepositoryObserver

log = logging.getLogger(__name__)

PREFIX = "mnist_serving_"
NO_MODEL = "none"
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass
class CallLabels:
    """Filled in while an RPC runs (the metered handler creates it, the core names the model)."""

    model: str = NO_MODEL


# The labels of the RPC being handled in this task (None outside an RPC).
current_call: contextvars.ContextVar[CallLabels | None] = contextvars.ContextVar("current_call", default=None)


def label_call_model(model: str | None) -> None:
    """The model the request being handled named (None: no served model): InferenceCore calls it."""
    labels = current_call.get()
    if labels is not None:
        labels.model = NO_MODEL if model is None else model


class ServerMetrics:
    """All of the server's metrics in one registry (a fresh one per server: tests can make many)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = registry
        r = registry
        self.requests = Counter(
            PREFIX + "requests_total",
            "RPCs finished, by method, model and status code",
            ["method", "model", "code"],
            registry=r,
        )
        self.request_latency = Histogram(
            PREFIX + "request_latency_seconds",
            "RPC duration in the server",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.images = Counter(PREFIX + "images_total", "Images classified successfully", ["model"], registry=r)
        self.queue_wait = Histogram(
            PREFIX + "queue_wait_seconds",
            "Time a request waited for its batch",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            PREFIX + "batch_size", "Images per model call", ["model"], buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.compute = Histogram(
            PREFIX + "compute_seconds",
            "Duration of one model call (one batch)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(PREFIX + "queue_depth", "Images waiting for the model", ["model"], registry=r)
        self.inflight = Gauge(PREFIX + "inflight_requests", "RPCs being handled now", registry=r)
        self.model_version = Gauge(
            PREFIX + "model_version", "Version answering by default (0: none yet)", ["model", "device"], registry=r
        )
        self.model_runtime = Gauge(
            PREFIX + "model_runtime_info",
            "1 for each loaded version, labelled with what computes it (tensorflow, litert, litert+tensorflow)",
            ["model", "version", "runtime"],
            registry=r,
        )
        self.model_loads = Counter(
            PREFIX + "model_loads_total", "Version loads by outcome (success/failure)", ["model", "outcome"], registry=r
        )
        self.model_load_seconds = Histogram(
            PREFIX + "model_load_seconds",
            "Load plus warm-up of one version",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.model_versions_on_disk = Gauge(
            PREFIX + "model_versions_on_disk",
            "Version directories with a SavedModel at the last scan of the base "
            "path (0: emptied or unreadable; the server keeps what it loaded)",
            ["model"],
            registry=r,
        )
        self.dropped = Counter(
            PREFIX + "requests_dropped_total",
            "Requests refused or dropped before compute, by reason (queue_full, deadline, cancelled)",
            ["model", "reason"],
            registry=r,
        )

        self.http_requests = Counter(
            PREFIX + "http_requests_total",
            "HTTP requests answered, by route, model and HTTP status",
            ["route", "model", "status"],
            registry=r,
        )
        self.http_request_latency = Histogram(
            PREFIX + "http_request_latency_seconds",
            "HTTP request duration in the server",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_connections = Gauge(PREFIX + "http_connections", "Open HTTP connections", registry=r)
        self.http_connections_refused = Counter(
            PREFIX + "http_connections_refused_total",
            "HTTP connections refused at once with 503: --http-max-connections were open",
            registry=r,
        )

    def batch_observer(self, model: str) -> BatchObserver:
        return _ModelBatchObserver(self, model)

    def repository_observer(self) -> RepositoryObserver:
        return _RepositoryMetrics(self)


class _RepositoryMetrics(RepositoryObserver):
    def __init__(self, metrics: ServerMetrics):
        self._m = metrics

    def default_version(self, model: str, device: str, version: int) -> None:
        self._m.model_version.labels(model, device).set(version)

    def versions_on_disk(self, model: str, count: int) -> None:
        self._m.model_versions_on_disk.labels(model).set(count)

    def load_failed(self, model: str) -> None:
        self._m.model_loads.labels(model, "failure").inc()

    def version_loaded(self, model: str, version: int, runtime: str, seconds: float) -> None:
        self._m.model_runtime.labels(model, str(version), runtime).set(1)
        self._m.model_loads.labels(model, "success").inc()
        self._m.model_load_seconds.labels(model).observe(seconds)

    def version_unloaded(self, model: str, version: int, runtime: str) -> None:
        with contextlib.suppress(KeyError):
            self._m.model_runtime.remove(model, str(version), runtime)


class _ModelBatchObserver(BatchObserver):
    """The batcher's hooks bound to one model's label values (children resolved once)."""

    def __init__(self, metrics: ServerMetrics, model: str):
        self._depth = metrics.queue_depth.labels(model)
        self._wait = metrics.queue_wait.labels(model)
        self._size = metrics.batch_size.labels(model)
        self._compute = metrics.compute.labels(model)
        self._images = metrics.images.labels(model)
        self._dropped = metrics.dropped
        self._model = model

    def queue_depth(self, images: int) -> None:
        self._depth.set(images)

    def batch_started(self, images: int, queue_waits_s: list[float]) -> None:
        self._size.observe(images)
        for wait in queue_waits_s:
            self._wait.observe(wait)

    def batch_finished(self, images: int, compute_s: float, ok: bool, queue_waits_s: list[float] | None = None) -> None:
        self._compute.observe(compute_s)
        if ok:
            self._images.inc(images)

    def dropped(self, reason: str, requests: int = 1) -> None:
        self._dropped.labels(self._model, reason).inc(requests)
