"""The HTTP server: aiohttp on the event loop gRPC runs on, so HTTP requests join the same batches.

Slow and hostile clients cost a bounded amount: at most --http-max-connections open connections
(beyond: 503 and close, before any byte is read); a connection without a complete request within
--http-idle-timeout is closed (aiohttp's keep-alive timer, which also runs from the connection's
start, so half-sent headers count); a body slower than --http-body-timeout gets 408, an answer the
client does not take within it drops the connection; a body over
--max-receive-message-bytes gets 413 before it is read; headers are capped by aiohttp (8 KiB per
line). No thread per connection: each is a protocol object and a task on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from aiohttp import web

from ..config import Settings
from ..inference import InferenceCore
from ..metrics import ServerMetrics
from ..security import TokenVerifier
from ..services.classifier import ClassifierService
from . import classify, kserve, middleware, page, probes, tfserving
from .context import SETTINGS, WebContext

log = logging.getLogger(__name__)

# After an answer sent before the body was read (413, 408, 401...), aiohttp reads and discards the
# rest for this long before it closes, so the client can read the answer (closing at once with
# unread bytes sends a TCP reset, which may destroy it); its default of 10 s lets a slow sender
# hold the connection 10 s more.
LINGERING_S = 2.0
API_MODULES = (tfserving, kserve, classify, page)  # each has add_routes(router, context)
TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nRetry-After: 1\r\nContent-Length: 76\r\n\r\n"
    b'{"error": "too many open connections (--http-max-connections); retry later"}'
)
assert len(TOO_MANY_CONNECTIONS.split(b"\r\n\r\n", 1)[1]) == 76


class _Refusal(asyncio.Protocol):
    """What a connection beyond the limit talks to: one 503, then close."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(TOO_MANY_CONNECTIONS)  # type: ignore[attr-defined]
        transport.close()


def build_app(context: WebContext, metrics: ServerMetrics, verifier: TokenVerifier | None) -> web.Application:
    settings = context.settings
    app = web.Application(
        client_max_size=settings.max_receive_message_bytes,
        middlewares=[
            middleware.metered(metrics),
            middleware.bounded_send(settings.http_body_timeout_s),
            middleware.errors,
            middleware.guard(context.core, verifier, settings.tls_client_ca is not None),
        ],
    )
    app[SETTINGS] = settings
    probes.add_routes(app.router, context, metrics)
    for module in API_MODULES:
        module.add_routes(app.router, context)
    app.on_response_prepare.append(middleware.add_security_headers)
    return app


class HttpServer:
    def __init__(
        self,
        core: InferenceCore,
        settings: Settings,
        metrics: ServerMetrics,
        verifier: TokenVerifier | None,
        classifier: ClassifierService,
    ):
        self.settings = settings
        self.metrics = metrics
        self.app = build_app(WebContext(core, settings, classifier), metrics, verifier)
        self.ssl_context: ssl.SSLContext | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._reaper: asyncio.Task | None = None

    async def start(self, ssl_context: ssl.SSLContext | None) -> None:
        """Raises OSError when the port cannot be taken."""
        s = self.settings
        self.ssl_context = ssl_context
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=s.http_idle_timeout_s,
            shutdown_timeout=s.grace_period_s,
            lingering_time=LINGERING_S,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        limit, gauge, refused = (
            s.http_max_connections,
            self.metrics.http_connections,
            self.metrics.http_connections_refused,
        )
        gauge.set_function(lambda: len(server.connections))

        def protocol() -> asyncio.Protocol:
            if len(server.connections) >= limit:
                refused.inc()
                return _Refusal()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol,
            s.host,
            s.http_port,
            ssl=ssl_context,
            # a TLS handshake nobody finishes holds no connection slot yet: bounded like half-sent headers
            ssl_handshake_timeout=s.http_idle_timeout_s if ssl_context else None,
            backlog=512,
            reuse_address=True,
            family=socket.AF_INET6 if ":" in s.host else socket.AF_UNSPEC,
        )
        self._reaper = asyncio.create_task(_reap_unflushed(server, s.http_body_timeout_s), name="http-reaper")
        log.info(
            "HTTP%s on %s:%d: TF Serving REST (/v1/models), KServe v2 REST (/v2), image upload (/api/v1), "
            "the page (/), /metrics, /healthz, /readyz",
            " (TLS)" if ssl_context else "",
            s.host,
            s.http_port,
        )

    async def stop(self) -> None:
        """No new connections; requests already being handled are answered (within --grace-period);
        idle keep-alive connections close."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _reap_unflushed(server: web.Server, timeout_s: float) -> None:
    """A closed connection whose client stopped reading never goes away by itself: asyncio's close()
    waits for the unsent bytes to flush. Such connections are aborted once they have been closing
    for --http-body-timeout (checked every second; the connection list is aiohttp's own)."""
    loop = asyncio.get_running_loop()
    closing_since: dict[int, float] = {}
    while True:
        await asyncio.sleep(1.0)
        now, seen = loop.time(), {}
        for handler in server.connections:
            transport = handler.transport
            if transport is None or not transport.is_closing() or not transport.get_write_buffer_size():
                continue
            key = id(transport)
            seen[key] = since = closing_since.get(key, now)
            if now - since >= timeout_s:
                transport.abort()
        closing_since = seen
