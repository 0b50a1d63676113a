"""What every HTTP request goes through, outermost first:

1. metered: times and counts it by route, model and status (mnist_serving_http_requests_total),
   and gives the core the CallLabels it names the model in (as metered.py does for gRPC);
2. bounded_send: the answer must be taken by the client within --http-body-timeout, or the connection
   is dropped (a client reading one byte at a time holds neither a slot nor memory for long);
3. errors: domain errors -> the HTTP status of errors.HTTP_STATUS and `{"error": message}`; aiohttp's
   own refusals (404, 405, 413, ...) get the same JSON shape and a message naming what was wrong;
   anything else is a bug: 500 with a generic message, traceback in the log;
4. guard: while draining, new requests other than probes get 503; protected routes need a client
   certificate (mutual TLS) and a bearer token valid for their gRPC service;
5. security headers on every answer (the page's CSP lives in page.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time

import grpc
from aiohttp import web

from ..errors import HTTP_STATUS, INTERNAL_MESSAGE, MAX_MESSAGE_CHARS, ServingError, ShuttingDown, to_http_status
from ..inference import InferenceCore
from ..metrics import CallLabels, ServerMetrics, current_call
from ..security import TokenVerifier
from .context import Handler, protected_service

log = logging.getLogger(__name__)

UNMATCHED = "unmatched"  # the route label of requests no route took (404, 405)
NO_CLIENT_CERTIFICATE = (
    "a client certificate is required (the server runs mutual TLS: --tls-client-ca); "
    "only /healthz, /readyz and /metrics answer without one"
)


def error_response(status: int, message: str, headers: dict | None = None) -> web.Response:
    """The one error body of every API on this port: TF Serving REST and KServe v2 REST both
    specify `{"error": "<message>"}`."""
    if len(message) > MAX_MESSAGE_CHARS:
        half = MAX_MESSAGE_CHARS // 2
        message = f"{message[:half]}...[{len(message) - 2 * half} chars cut]...{message[-half:]}"
    return web.Response(
        status=status, text=json.dumps({"error": message}), content_type="application/json", headers=headers
    )


def route_label(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    if resource is None:
        return UNMATCHED
    return f"{request.method} {resource.canonical}"


def metered(metrics: ServerMetrics):
    counters: dict[tuple[str, str, int], object] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        labels, started = CallLabels(), time.perf_counter()
        token = current_call.set(labels)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            with contextlib.suppress(ValueError):
                current_call.reset(token)
            route = route_label(request)
            metrics.http_request_latency.labels(route).observe(time.perf_counter() - started)
            key = (route, labels.model, status)
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = metrics.http_requests.labels(route, labels.model, str(status))
            counter.inc()  # type: ignore[attr-defined]

    return middleware


def bounded_send(timeout_s: float):
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if response.prepared:  # streamed by its handler
            return response
        try:  # aiohttp would send it after we return, with no time limit: send it here instead
            await asyncio.wait_for(_send(request, response), timeout_s)
        except TimeoutError:
            log.debug("dropped a connection that did not take its %s answer within %.1fs", request.path, timeout_s)
            if request.transport is not None:
                request.transport.abort()
        return response

    return middleware


async def _send(request: web.Request, response: web.StreamResponse) -> None:
    await response.prepare(request)
    await response.write_eof()


def _http_exception_message(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPNotFound) and request.match_info.http_exception is exc:
        return (
            f"no route for {request.method} {request.path}; the API routes are under /v1/models "
            "(TF Serving REST), /v2 (KServe v2 REST) and /api/v1 (image upload), the page is at /"
        )
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return (
            f"method {exc.method} is not allowed on {request.path}; allowed: {', '.join(sorted(exc.allowed_methods))}"
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return (
            f"the request body is larger than the limit of {request.client_max_size} bytes "
            "(--max-receive-message-bytes); send fewer images per request"
        )
    return exc.text or exc.reason


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ServingError as exc:
        status, message = to_http_status(exc)
        return error_response(status, message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate", "connection")}
        return error_response(exc.status, _http_exception_message(request, exc), headers)
    except Exception as exc:  # noqa: BLE001 - a bug: logged with its traceback, generic to the caller
        if isinstance(exc, (ConnectionResetError,)):
            raise
        log.error("unexpected error while handling %s %s", request.method, request.path, exc_info=exc)
        return error_response(500, INTERNAL_MESSAGE)


def guard(core: InferenceCore, verifier: TokenVerifier | None, mutual_tls: bool):
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        service = protected_service(request.match_info.handler)
        if service is None:
            return await handler(request)
        if core.draining:  # accepted requests finish; this one was not accepted yet
            raise ShuttingDown()
        if mutual_tls and not _has_client_certificate(request):
            return error_response(403, NO_CLIENT_CERTIFICATE)
        if verifier is not None:
            refusal = verifier.verdict(request.headers.getall("Authorization", []), service)
            if refusal is not None:
                code, message = refusal
                headers = (
                    {"WWW-Authenticate": 'Bearer realm="mnist-serving"'}
                    if code == grpc.StatusCode.UNAUTHENTICATED
                    else None
                )
                return error_response(HTTP_STATUS[code], message, headers)
        return await handler(request)

    return middleware


def _has_client_certificate(request: web.Request) -> bool:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if not isinstance(ssl_object, ssl.SSLObject):
        return False
    return bool(ssl_object.getpeercert())  # verified against --tls-client-ca during the handshake


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer, errors included."""
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
