"""The one exception the client raises, and the conversion from gRPC's own."""

from __future__ import annotations

import grpc


class ClientError(Exception):
    """A call failed. ``code`` is a ``grpc.StatusCode``; ``details`` is the server's message.

    Inputs the client can reject without asking the server (a wrong shape, an unreadable
    file) raise it too, with ``INVALID_ARGUMENT``, so callers have one thing to catch::

        try:
            client.classify(images)
        except ClientError as err:
            if err.code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                ...  # the server is overloaded: back off
    """

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def from_rpc_error(error: grpc.RpcError) -> ClientError:
    """The ``ClientError`` for a ``grpc.RpcError`` (sync or asyncio)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return ClientError(code or grpc.StatusCode.UNKNOWN, details or "")


def code_from_number(number: int) -> grpc.StatusCode:
    """A ``grpc.StatusCode`` from its integer value (as carried in a stream's ``Error``)."""
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN


def invalid_input(message: str) -> ClientError:
    """A ``ClientError`` for input rejected before it was sent."""
    return ClientError(grpc.StatusCode.INVALID_ARGUMENT, message)
