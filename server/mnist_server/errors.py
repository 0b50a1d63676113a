"""Domain errors and THE one table that turns them into gRPC status codes.

Every protocol adapter raises (or lets through) these exceptions; the metered handlers (metered.py)
and the streaming handlers call `to_status` so the same failure always gets the same code and message.
Anything not in the table is a bug: INTERNAL with a generic message, traceback in the log.
"""

from __future__ import annotations

import logging

import grpc

log = logging.getLogger(__name__)


class ServingError(Exception):
    """Base of every error the server reports on purpose; `message` is safe to show the caller."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(ServingError):
    """The request itself is wrong (shape, byte count, dtype, undecodable image, empty...)."""

    def __init__(self, message: str, *, index: int | None = None):
        super().__init__(f"image {index}: {message}" if index is not None else message)
        self.index = index


class ModelNotFound(ServingError):
    """No such model, or no such version loaded."""

    def __init__(self, model: str, version: int | None = None, *, available: list | None = None):
        if version is None:
            text = f"model '{model}' is not served"
            if available is not None:
                text += f"; served models: {', '.join(map(str, available)) or 'none'}"
        else:
            text = f"version {version} of model '{model}' is not loaded"
            if available is not None:
                text += f"; loaded versions: {', '.join(map(str, available)) or 'none'}"
        super().__init__(text)
        self.model = model
        self.version = version
        self.available = available


class ModelUnavailable(ServingError):
    """The model exists but cannot answer now (nothing loaded yet, shutting down)."""

    def __init__(self, model: str, reason: str):
        super().__init__(f"model '{model}' is unavailable: {reason}")
        self.model = model
        self.reason = reason


class Overloaded(ServingError):
    """The batch queue is full: shed load now rather than time out later (clients may retry)."""

    def __init__(self, queued: int, requested: int, limit: int):
        super().__init__(
            f"server overloaded: {queued} images queued, {requested} more would exceed "
            f"the limit of {limit}; retry later"
        )
        self.queued = queued
        self.requested = requested
        self.limit = limit


class DeadlineExceeded(ServingError):
    """The caller's deadline passed before the work could be done."""

    def __init__(self, where: str):
        super().__init__(f"deadline exceeded {where}")
        self.where = where


class ModelLoadError(ServingError):
    """A version could not be loaded or warmed up (never sent to clients; logged and counted)."""


class ModelFailure(ServingError):
    """The model raised or returned something unusable while computing a batch (logged where it
    happened, once per batch; callers get a generic message)."""

    def __init__(self, message: str = "the model failed while computing this request's batch"):
        super().__init__(message)


class BatcherClosed(ServingError):
    """A request reached a batcher that stopped taking work (its model version is being unloaded)."""

    def __init__(self):
        super().__init__("this model version stopped taking requests; retry")


class ShuttingDown(ServingError):
    """The server is draining and takes no new work (streams end with this)."""

    def __init__(self):
        super().__init__("server is shutting down; retry on another replica")


# THE table: exception type -> status code. Messages come from the exception itself.
STATUS_TABLE: dict[type[ServingError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    ModelUnavailable: grpc.StatusCode.UNAVAILABLE,
    ShuttingDown: grpc.StatusCode.UNAVAILABLE,
    BatcherClosed: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    ModelFailure: grpc.StatusCode.INTERNAL,
    ModelLoadError: grpc.StatusCode.INTERNAL,
}

INTERNAL_MESSAGE = "internal server error (details are in the server log)"
# Messages quote the caller's input (a model name, a label): cap them, or a 10 kB name makes the
# status trailer exceed the client's 8 KiB metadata limit and the caller sees "Stream removed".
# 600 characters stay under it even when every one is a 4-byte UTF-8 character, percent-encoded.
MAX_MESSAGE_CHARS = 600


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Status code and caller-safe message for any exception; logs the traceback of unknown ones."""
    for cls in type(exc).__mro__:
        code = STATUS_TABLE.get(cls)
        if code is not None:
            message = exc.message  # type: ignore[attr-defined]
            if len(message) > MAX_MESSAGE_CHARS:  # keep both ends: the input, then what is wrong
                half = MAX_MESSAGE_CHARS // 2
                message = f"{message[:half]}...[{len(message) - 2 * half} chars cut]...{message[-half:]}"
            return code, message
    log.error("unexpected error while handling a request", exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


# gRPC status -> HTTP status, for the HTTP APIs (web/): the mapping google.rpc.Code documents,
# which TF Serving's REST API and KServe v2 REST also follow. So an error has one code on every port.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


def to_http_status(exc: BaseException) -> tuple[int, str]:
    """HTTP status and caller-safe message: to_status's answer, through HTTP_STATUS."""
    code, message = to_status(exc)
    return HTTP_STATUS[code], message
