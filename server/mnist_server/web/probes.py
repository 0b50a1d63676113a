"""/healthz (the process answers), /readyz (every model has a version and the server is not
draining), /metrics (Prometheus text). Open to all: orchestrators and Prometheus call them without
tokens or client certificates."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..metrics import ServerMetrics
from .context import WebContext


def add_routes(router: web.UrlDispatcher, context: WebContext, metrics: ServerMetrics) -> None:
    core = context.core

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if core.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="draining\n" if core.draining else "not ready\n")

    async def metrics_text(request: web.Request) -> web.Response:
        # generate_latest walks every metric (a few ms): fine on the loop at scrape intervals
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)
    router.add_get("/metrics", metrics_text)
    router.add_get("/metrics/", metrics_text)
