"""The one table: each domain error -> its status code, with the exception's own message."""

from __future__ import annotations

import logging

import grpc
import pytest

from mnist_server import errors


@pytest.mark.parametrize(
    "exc, code, text",
    [
        (
            errors.InvalidInput("pixels has 2 bytes", index=3),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image 3: pixels has 2 bytes",
        ),
        (
            errors.ModelNotFound("fashion", available=["mnist"]),
            grpc.StatusCode.NOT_FOUND,
            "model 'fashion' is not served; served models: mnist",
        ),
        (
            errors.ModelNotFound("mnist", 7, available=[1, 2]),
            grpc.StatusCode.NOT_FOUND,
            "version 7 of model 'mnist' is not loaded; loaded versions: 1, 2",
        ),
        (
            errors.ModelUnavailable("mnist", "no version loaded yet"),
            grpc.StatusCode.UNAVAILABLE,
            "model 'mnist' is unavailable: no version loaded yet",
        ),
        (errors.ShuttingDown(), grpc.StatusCode.UNAVAILABLE, "shutting down"),
        (errors.BatcherClosed(), grpc.StatusCode.UNAVAILABLE, "retry"),
        (
            errors.Overloaded(100, 8, 104),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "100 images queued, 8 more would exceed the limit of 104",
        ),
        (
            errors.DeadlineExceeded("while waiting in the batch queue"),
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "deadline exceeded while waiting in the batch queue",
        ),
        (errors.ModelFailure(), grpc.StatusCode.INTERNAL, "model failed"),
    ],
)
def test_domain_errors_map_to_their_code_and_message(exc, code, text):
    got_code, message = errors.to_status(exc)
    assert got_code is code
    assert text in message


def test_every_domain_error_is_in_the_table():
    domain = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ServingError) and cls is not errors.ServingError
    }
    assert domain <= set(errors.STATUS_TABLE)


def test_unknown_errors_are_internal_with_a_generic_message_and_a_logged_traceback(caplog):
    try:
        {}["secret-internal-detail"]
    except KeyError as exc:
        with caplog.at_level(logging.ERROR, logger="mnist_server.errors"):
            code, message = errors.to_status(exc)
    assert code is grpc.StatusCode.INTERNAL
    assert message == errors.INTERNAL_MESSAGE and "secret" not in message
    assert "secret-internal-detail" in caplog.text and "Traceback" in caplog.text


def test_subclasses_inherit_their_parents_code():
    class TooDark(errors.InvalidInput):
        pass

    assert errors.to_status(TooDark("too dark"))[0] is grpc.StatusCode.INVALID_ARGUMENT
