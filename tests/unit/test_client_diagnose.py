"""Turning gRPC's transport errors into reasons a user can act on (mnist_client.diagnose), and the
fast `health` when nothing listens. Real servers for every case: tests/integration/test_client_reach.py."""

from __future__ import annotations

import time

import grpc
import pytest

from mnist_client import ClientError, MnistClient, TlsConfig
from mnist_client.cli import main
from mnist_client.diagnose import connection_problem, host_port, probe_result
from tests.support.server_process import free_port

LAST_ERROR = "failed to connect to all addresses; last error: "


@pytest.mark.parametrize(
    "details, reason, lasting",
    [
        (
            "UNKNOWN: ipv4:127.0.0.1:9: Failed to connect to remote host: Connection refused",
            "connection refused",
            False,
        ),
        (
            "INTERNAL: ipv4:127.0.0.1:9: Failed parsing HTTP/2 (Expected SETTINGS frame as the first frame, got "
            "frame type 80) (Trying to connect an http1.x server (HTTP status 400))",
            "not a gRPC server (it answered HTTP/1.1",
            True,
        ),
        (
            "UNKNOWN: ipv4:127.0.0.1:9: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:"
            "SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK",
            "TLS handshake failed: the server's certificate is not trusted (unable to get local issuer certificate)",
            True,
        ),
    ],
)
def test_transport_errors_become_reasons(details, reason, lasting):
    problem = connection_problem(LAST_ERROR + details, "127.0.0.1:9", None)
    assert problem is not None and reason in problem.reason and problem.lasting is lasting


def test_a_tls_client_at_a_plaintext_port_is_told_so():
    details = (
        LAST_ERROR + "UNKNOWN: ipv4:127.0.0.1:9: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
        "SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER"
    )
    problem = connection_problem(details, "127.0.0.1:9", TlsConfig())
    assert problem.lasting and "the server does not speak TLS" in problem.reason


def test_a_server_that_answered_is_no_connection_problem():
    assert probe_result(grpc.StatusCode.NOT_FOUND, "unknown service", "127.0.0.1:9", None) is None
    assert probe_result(grpc.StatusCode.UNAUTHENTICATED, "missing credentials", "127.0.0.1:9", None) is None
    unknown = probe_result(grpc.StatusCode.UNAVAILABLE, "something new", "127.0.0.1:9", None)
    assert unknown.reason == "something new" and not unknown.lasting


@pytest.mark.parametrize(
    "target, address",
    [
        ("127.0.0.1:8500", ("127.0.0.1", 8500)),
        ("[::1]:8500", ("::1", 8500)),
        ("localhost", ("localhost", 443)),
        ("dns:///mnist.internal:9500", ("mnist.internal", 9500)),
        ("unix:/tmp/mnist.sock", None),
    ],
)
def test_targets_are_parsed_for_the_probe(target, address):
    assert host_port(target) == address


def test_health_answers_at_once_when_nothing_listens(capsys):
    started = time.monotonic()
    assert main(["health", "--target", f"127.0.0.1:{free_port()}", "--timeout", "30"]) == 1
    assert time.monotonic() - started < 5, "the default health is a fast answer (container HEALTHCHECK)"
    err = capsys.readouterr().err
    assert "UNAVAILABLE: cannot reach" in err and "connection refused" in err


def test_health_wait_gives_up_when_the_timeout_passes(capsys):
    started = time.monotonic()
    assert main(["health", "--wait", "--target", f"127.0.0.1:{free_port()}", "--timeout", "1.5"]) == 1
    assert 1.2 < time.monotonic() - started < 6
    assert "connection refused (nothing listens there)" in capsys.readouterr().err


def test_a_call_that_waited_in_vain_says_why():
    with MnistClient(f"127.0.0.1:{free_port()}", timeout=1) as client:
        with pytest.raises(ClientError) as info:
            client.model_info()
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "connection refused (nothing listens there) (waited 1 s)" in info.value.details
