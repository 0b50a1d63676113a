"""Wiring: build every part from Settings, serve gRPC + HTTP, poll for versions, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from prometheus_client import disable_created_metrics

from .batcher import Batcher
from .config import Settings
from .device_slots import DeviceSlots
from .health_status import HealthServicer
from .inference import InferenceCore
from .metered import MeteredServer
from .metrics import ServerMetrics, label_call_model
from .model import DeviceChoice, LoadedModel, cpu_count
from .repository import ModelRepository
from .runtime_tensorflow import configure_tensorflow
from .runtimes import RuntimeOptions, load_model
from .security import auth_interceptors, http_ssl_context, server_credentials, token_verifier
from .services import classifier, kserve, tfserving
from .web.server import HttpServer

log = logging.getLogger(__name__)

# Protocol adapters on the gRPC port; each has add_to_server(server, core, settings) -> service names.
ADAPTERS = (classifier, tfserving, kserve)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# What loads one version directory: (model name, version, path, device) -> a warmed-up-able LoadedModel.
ModelLoader = Callable[[str, int, Path, DeviceChoice], LoadedModel]
CPU = DeviceChoice("cpu", "/CPU:0")


class StartupError(Exception):
    """The server cannot start (port taken, ...); the message says why."""


class ModelServer:
    """Every running part of one server. `await start()`, then `await drain()`.

    `loader` defaults to the real runtimes (runtimes.load_model, after TensorFlow's process setup);
    a test hands in its own (tests/support/fake_model.py) and the server sets up no TensorFlow."""

    def __init__(self, settings: Settings, loader: ModelLoader | None = None):
        self.settings = settings
        disable_created_metrics()  # no `*_created` series: they double what we expose, for nothing
        self.metrics = ServerMetrics()
        self._real_runtimes = loader is None
        if loader is None:
            device = configure_tensorflow(settings.device, settings.intra_op_threads, settings.inter_op_threads)
            loader = self._runtime_loader(settings)
        else:
            device = CPU
        # Batches run on these threads (TensorFlow's own pool uses the cores inside each call); every
        # model's batcher takes one of these slots, one per thread, before it forms a batch.
        self.model_executor = ThreadPoolExecutor(settings.max_concurrent_batches, thread_name_prefix="model-worker")
        self.device_slots = DeviceSlots(settings.max_concurrent_batches)
        self.repository = ModelRepository(
            settings.models,
            device=device,
            keep_versions=settings.keep_versions,
            make_batcher=self._make_batcher,
            observer=self.metrics.repository_observer(),
            warm_up_sizes=warm_up_sizes(settings),
            drain_timeout_s=settings.grace_period_s,
            loader=loader,
        )
        self.core = InferenceCore(
            self.repository,
            default_model=settings.default_model,
            max_images_per_request=settings.max_images_per_request,
            max_batch_size=settings.max_batch_size,
            on_model_named=label_call_model,
        )
        self.health = HealthServicer()
        verifier = token_verifier(settings)
        # HTTP and gRPC share the core, the batchers, the token rules and our API's request handling
        self.http = HttpServer(
            self.core, settings, self.metrics, verifier, classifier.ClassifierService(self.core, settings)
        )
        self.grpc_server = grpc.aio.server(
            # a call refused by auth never reaches the metered handlers (auth counts its own refusals)
            interceptors=auth_interceptors(verifier, self.metrics) or None,
            options=[
                ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
                ("grpc.max_send_message_length", settings.max_receive_message_bytes),
                ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
                # clients keep connections alive with pings (mnist_client: every 60 s in a
                # call); the default tolerance of one per 5 minutes would drop them
                ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
                ("grpc.so_reuseport", 0),
            ],  # a taken port is an error, not a shared port
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )  # beyond: RESOURCE_EXHAUSTED
        self.service_names: list[str] = []
        metered = MeteredServer(self.grpc_server, self.metrics)  # every service registers through it
        for adapter in ADAPTERS:
            self.service_names.extend(adapter.add_to_server(metered, self.core, settings))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, metered)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(
                [
                    *self.service_names,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ]
            ),
            metered,
        )
        self._stopping = asyncio.Event()
        self._poller: asyncio.Task | None = None

    @staticmethod
    def _runtime_loader(settings: Settings) -> ModelLoader:
        runtime = RuntimeOptions(
            settings.runtime,
            settings.intra_op_threads or cpu_count(),
            settings.litert_max_batch_size,
            settings.max_batch_size,
        )
        log.info(
            "runtime %s%s; computed on the event loop's thread: %s; adaptive batch window %.2f ms",
            runtime.kind,
            f" (LiteRT up to batch {runtime.litert_max_batch or 'measured per version at load'}, TensorFlow above)"
            if runtime.kind == "auto"
            else "",
            "LiteRT's batches"
            if settings.inline_max_batch_size is None
            else f"batches up to {settings.inline_max_batch_size} images",
            settings.adaptive_batch_window_s * 1000,
        )
        return lambda name, version, path, device: load_model(name, version, path, device, runtime)

    def _make_batcher(self, model: LoadedModel) -> Batcher:
        s = self.settings
        return Batcher(
            model.predict,
            max_batch_size=s.max_batch_size,
            batch_timeout_s=s.batch_timeout_s,
            max_queue_images=s.max_queue_images,
            executor=self.model_executor,
            observer=self.core.statistics.observer(model.name, model.version, self.metrics.batch_observer(model.name)),
            item_shape=model.input_shape[1:],
            item_dtype=np.dtype(np.uint8),
            inline_max_items=(
                getattr(model.runtime, "inline_max_batch", 0)
                if s.inline_max_batch_size is None
                else s.inline_max_batch_size
            ),
            adaptive_window_s=s.adaptive_batch_window_s,
            slots=self.device_slots,
        )

    async def start(self) -> None:
        s = self.settings
        credentials = server_credentials(s)
        try:
            if credentials is None:
                self.grpc_server.add_insecure_port(s.grpc_address)
            else:
                self.grpc_server.add_secure_port(s.grpc_address, credentials)
        except RuntimeError as exc:
            raise StartupError(f"cannot listen for gRPC on {s.grpc_address}: {exc} (port in use? try --port)") from None
        try:
            await self.http.start(http_ssl_context(s))
        except OSError as exc:
            raise StartupError(
                f"cannot listen for HTTP on {s.host}:{s.http_port}: {exc.strerror} (port in use? try --http-port)"
            ) from None
        await self._set_health(NOT_SERVING)
        await self.grpc_server.start()
        log.info(
            "gRPC%s on %s: %s (+ health, reflection); models: %s",
            "" if credentials is None else " (TLS)" if s.tls_client_ca is None else " (mutual TLS)",
            s.grpc_address,
            ", ".join(self.service_names),
            ", ".join(f"{m.name}={m.base_path}" for m in s.models),
        )
        self._poller = asyncio.create_task(self._poll_forever(), name="model-poller")

    async def _poll_forever(self) -> None:
        first = self._real_runtimes  # freeze once, in a process of its own with TensorFlow's objects
        while True:
            await self.repository.poll_once()
            if first:
                _freeze_startup_objects()
                first = False
            await self._set_health(SERVING if self.core.ready else NOT_SERVING)
            if self.settings.poll_interval_s <= 0:
                return
            try:
                await asyncio.wait_for(self._stopping.wait(), self.settings.poll_interval_s)
                return
            except TimeoutError:
                pass

    async def _set_health(self, status) -> None:
        for service in ("", *self.service_names):
            await self.health.set(service, status)

    async def drain(self) -> None:
        """Not ready first, then stop accepting, then finish what was accepted (within the grace).
        The HTTP port stays open until the gRPC calls are answered, so probes and Prometheus see
        the drain (/readyz 503); new HTTP API requests get 503 meanwhile (web/middleware.py)."""
        grace = self.settings.grace_period_s
        log.info("draining: health NOT_SERVING, /readyz 503; finishing accepted requests (grace %.1fs)", grace)
        self._stopping.set()
        self.core.start_draining()
        await self.health.enter_graceful_shutdown()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.grpc_server.stop(grace)
        # accepted HTTP requests ran meanwhile; what is left of the grace bounds the rest (at least 1 s)
        try:
            await asyncio.wait_for(self.http.stop(), max(1.0, grace - (loop.time() - started)))
        except TimeoutError:
            log.warning("HTTP requests still running at the end of the grace period were cut off")
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        await self.repository.close(timeout_s=1.0)
        self.model_executor.shutdown(wait=True, cancel_futures=True)
        log.info("stopped")

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait_stop_requested(self) -> None:
        await self._stopping.wait()


def warm_up_sizes(settings: Settings) -> tuple[int, ...]:
    """Batch sizes each version runs once before it serves: first calls are slow, and under
    --runtime auto both sides of the LiteRT/TensorFlow boundary get their first call here."""
    largest = settings.max_batch_size
    sizes = {1, min(8, largest), largest}
    if settings.runtime == "auto" and settings.litert_max_batch_size:
        sizes.update(s for s in (settings.litert_max_batch_size, settings.litert_max_batch_size + 1) if s <= largest)
    return tuple(sorted(sizes))


def _freeze_startup_objects() -> None:
    """TensorFlow and the first model leave a few hundred thousand long-lived objects that every
    full garbage collection would walk again, on the event loop thread. gc.freeze() moves them out
    of the collector's sight (once: freezing later would also pin objects still in use by requests)."""
    gc.collect()
    gc.freeze()
    log.debug("gc: %d start-up objects frozen", gc.get_freeze_count())


async def serve(settings: Settings, loader: ModelLoader | None = None) -> int:
    """Runs until SIGTERM/SIGINT, drains, returns the exit code (`loader`: as ModelServer's)."""
    server = ModelServer(settings, loader)
    await server.start()
    log.info("event loop: %s", type(asyncio.get_running_loop()).__module__.split(".")[0])
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, server, sig)
    await server.wait_stop_requested()
    await server.drain()
    return 0


def _on_signal(server: ModelServer, sig: signal.Signals) -> None:
    log.info("received %s", sig.name)
    server.request_stop()
