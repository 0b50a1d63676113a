"""Every service's method handlers, wrapped once when they are registered: each RPC is timed and
counted by method, model and status code, and exceptions become status codes (errors.to_status).

So a protocol adapter only raises domain errors; metrics and the error table come for free.
Wrapping at registration instead of in a grpc.aio ServerInterceptor saves the interceptor chain
gRPC awaits on every call (measured in docs/benchmarks.md: part of the Python cost per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Callable
from typing import Any

import grpc

from .errors import InvalidInput, to_status
from .metrics import CallLabels, ServerMetrics, current_call

_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _request_decoder(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    """Parses request bytes in the handler, where a parse error can become INVALID_ARGUMENT
    (left to gRPC, undecodable bytes end as UNKNOWN "Unexpected DecodeError" plus a traceback)."""
    if deserialize is None:
        return lambda data: data
    message_type = getattr(deserialize, "__self__", None)
    name = getattr(getattr(message_type, "DESCRIPTOR", None), "full_name", "protobuf message")

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError and friends
            raise InvalidInput(
                f"the request bytes are not a valid {name} ({len(data)} bytes; {type(exc).__name__}: {exc})"
            ) from None

    return decode


def _decoding_unary(behavior, decode):
    return lambda request, context: behavior(decode(request), context)


def _decoding_stream(behavior, decode):
    async def decoded(requests):
        async for data in requests:
            yield decode(data)

    return lambda requests, context: behavior(decoded(requests), context)


def _code_name(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> str:
    """The status the RPC ended with (set by abort/set_code), else `default`."""
    try:
        code = context.code()
    except Exception:  # not available on every grpc version
        code = None
    if isinstance(code, int):
        code = _CODES_BY_VALUE.get(code)
    return (code or default).name


def _cancel_code(context: grpc.aio.ServicerContext) -> str:
    """gRPC cancels the handler both when the client gives up and when its deadline passes."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED.name
    return grpc.StatusCode.CANCELLED.name


class _MeteredGenericHandler(grpc.GenericRpcHandler):
    """A generic handler (looked up per call by gRPC) whose handlers come out wrapped."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrap: Callable[[grpc.RpcMethodHandler, str], Any]):
        self._inner = inner
        self._wrap = wrap
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = self._inner.service(handler_call_details)
            if handler is None:  # not this service's method: gRPC asks the next one (or UNIMPLEMENTED)
                return None
            wrapped = self._wrapped[method] = self._wrap(handler, method.lstrip("/"))
        return wrapped


class _MeteredCall:
    """`async with` around one RPC's handler: the call counts as in flight, is recorded once at the
    end with its status code, and a domain exception becomes that status (context.abort)."""

    __slots__ = ("_context", "_inflight", "_finish", "_labels", "_started", "_token")

    def __init__(self, context: grpc.aio.ServicerContext, inflight, finish: Callable[..., None]):
        self._context = context
        self._inflight = inflight
        self._finish = finish

    async def __aenter__(self) -> None:
        self._labels, self._started = CallLabels(), time.perf_counter()
        self._token = current_call.set(self._labels)
        self._inflight.inc()

    async def __aexit__(self, exc_type, exc, traceback) -> bool:
        code = grpc.StatusCode.OK.name
        if exc_type is None:
            pass
        elif issubclass(exc_type, grpc.aio.AbortError):
            code = _code_name(self._context, grpc.StatusCode.UNKNOWN)
        elif issubclass(exc_type, (asyncio.CancelledError, GeneratorExit)):
            code = _cancel_code(self._context)
        elif issubclass(exc_type, Exception):
            status, message = to_status(exc)
            # context.abort() sends the status before it raises: record first, so a caller that
            # scrapes /metrics right after its error sees it counted.
            self._finish(self._labels, self._token, status.name, self._started)
            await self._context.abort(status, message)
        self._finish(self._labels, self._token, code, self._started)
        return False


class MeteredServer:
    """Stands in for the grpc.aio.Server when services register (the generated
    `add_*Servicer_to_server(servicer, server)` functions call the two methods below)."""

    def __init__(self, server: grpc.aio.Server, metrics: ServerMetrics):
        self._server = server
        self._metrics = metrics

    def add_generic_rpc_handlers(self, handlers) -> None:
        self._server.add_generic_rpc_handlers(tuple(_MeteredGenericHandler(h, self._wrap) for h in handlers))

    def add_registered_method_handlers(self, service: str, method_handlers: dict) -> None:
        self._server.add_registered_method_handlers(
            service, {name: self._wrap(handler, f"{service}/{name}") for name, handler in method_handlers.items()}
        )

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        latency = self._metrics.request_latency.labels(method)
        requests = self._metrics.requests
        counters: dict[tuple[str, str], Any] = {}  # (model, code) -> its counter child: no lookup per call
        inflight = self._metrics.inflight

        def finish(labels: CallLabels, token, code: str, started: float) -> None:
            with contextlib.suppress(ValueError):  # a generator may be closed from another context
                current_call.reset(token)
            inflight.dec()
            latency.observe(time.perf_counter() - started)
            key = (labels.model, code)
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = requests.labels(method, *key)
            counter.inc()

        def unary_response(behavior):
            async def call(request, context):
                async with _MeteredCall(context, inflight, finish):
                    return await behavior(request, context)

            return call

        def stream_response(behavior):
            async def call(request, context):
                async with _MeteredCall(context, inflight, finish):
                    result = behavior(request, context)
                    if inspect.isasyncgen(result):
                        async for response in result:
                            yield response
                    else:  # a coroutine that writes with context.write()
                        await result

            return call

        decode = _request_decoder(handler.request_deserializer)  # requests arrive as bytes
        kwargs = dict(response_serializer=handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                unary_response(_decoding_unary(handler.unary_unary, decode)), **kwargs
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                unary_response(_decoding_stream(handler.stream_unary, decode)), **kwargs
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                stream_response(_decoding_unary(handler.unary_stream, decode)), **kwargs
            )
        return grpc.stream_stream_rpc_method_handler(
            stream_response(_decoding_stream(handler.stream_stream, decode)), **kwargs
        )
