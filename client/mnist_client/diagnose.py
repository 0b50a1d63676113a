"""Why the client could not reach a server, in words a user can act on.

gRPC reports a failed connection as UNAVAILABLE carrying the transport's last error ("Connection
refused", "Trying to connect an http1.x server", "Tls handshake failed ...", "Socket closed"); a
call that waits for the server only says DEADLINE_EXCEEDED. ``connection_problem`` reads that text;
where it is ambiguous ("Socket closed": a plaintext client at a TLS port, or a TLS client without
the certificate the server requires) it looks at the port itself: one TCP connection through the
standard ``ssl`` module (not verifying anything: only to learn whether the port speaks TLS and
whether it hangs up before answering HTTP/2).
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass

import grpc

from mnist_client.channel import TlsConfig
from mnist_client.errors import ClientError

PROBE_TIMEOUT_S = 2.0
HEALTH_POLL_S = 0.25  # health(wait=True) asks again this often
# What a call that never reached the server fails with (waitForReady calls: DEADLINE_EXCEEDED).
WAITING_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# What every HTTP/2 client sends first; a gRPC server answers with a SETTINGS frame.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")


@dataclass(frozen=True)
class Problem:
    """Why connecting failed. ``lasting``: waiting will not help (wrong port, wrong TLS settings),
    unlike a refused connection, which is also what a server that is still starting looks like."""

    reason: str
    lasting: bool


def connection_problem(details: str, target: str, tls: TlsConfig | None) -> Problem | None:
    """The problem gRPC's error text describes (probing the port when the text is ambiguous)."""
    if "Connection refused" in details:
        return Problem("connection refused (nothing listens there)", lasting=False)
    if "http1.x server" in details:
        return Problem("not a gRPC server (it answered HTTP/1.1; the HTTP port?)", lasting=True)
    if "CERTIFICATE_VERIFY_FAILED" in details:
        why = re.search(r"CERTIFICATE_VERIFY_FAILED: ([^:]+)", details)
        return Problem(
            "TLS handshake failed: the server's certificate is not trusted"
            + (f" ({why.group(1).strip()})" if why else ""),
            lasting=True,
        )
    if "WRONG_VERSION_NUMBER" in details and tls is not None:
        return Problem(
            "TLS handshake failed: the server does not speak TLS (a plaintext port? leave out --tls/--tls-ca)",
            lasting=True,
        )
    if "handshake" in details.lower():
        return Problem(f"TLS handshake failed ({details.rsplit(': ', 1)[-1]})", lasting=True)
    if "Socket closed" in details or "Connection reset" in details:
        return _hung_up(target, tls)
    return None


def _hung_up(target: str, tls: TlsConfig | None) -> Problem | None:
    """The server closed the connection: find out whether TLS settings are the reason."""
    answer = probe_tls(target, tls.server_name if tls else None)
    if answer is None:  # not a TLS port, or not reachable now: nothing certain to say
        return None
    if tls is None:
        return Problem(
            "TLS handshake failed: the server speaks TLS, the client plaintext (give --tls-ca CA.pem, or --tls)",
            lasting=True,
        )
    if answer == b"" and tls.client_cert is None:
        return Problem("the server requires a client certificate (give --tls-cert and --tls-key)", lasting=True)
    if answer == b"":
        return Problem(
            "the server refused the client certificate (is it signed by a CA the server trusts?)", lasting=True
        )
    return None


def probe_tls(target: str, server_name: str | None = None) -> bytes | None:
    """The first bytes a TLS server sends back to an HTTP/2 preface (b"" when it hangs up), or
    None when no TLS handshake completes. Presents no client certificate."""
    address = host_port(target)
    if address is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a probe, not a connection: we only ask "is this TLS?"
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection(address, PROBE_TIMEOUT_S) as raw:
            with context.wrap_socket(raw, server_hostname=server_name or address[0]) as tls_socket:
                try:
                    tls_socket.sendall(HTTP2_PREFACE)
                    return tls_socket.recv(64)
                except (ssl.SSLError, ConnectionError):  # an alert or a reset after the handshake
                    return b""
    except (OSError, ValueError):
        return None


def host_port(target: str) -> tuple[str, int] | None:
    """(host, port) of a gRPC target such as ``host:port``, ``[::1]:port`` or ``dns:///host:port``;
    None for targets a socket cannot dial (``unix:``)."""
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
            break
    if target.startswith("unix"):
        return None
    if target.startswith("["):  # [v6 address]:port
        host, _, rest = target[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = target.rpartition(":") if ":" in target else (target, "", "")
    try:
        return (host, int(port or 443)) if host else None  # 443: gRPC's default port
    except ValueError:
        return None


def probe_result(code: grpc.StatusCode | None, details: str, target: str, tls: TlsConfig | None) -> Problem | None:
    """What a health check sent without waiting for the server says: None when the server answered
    (with any status), else the problem (an unrecognised one is not taken as lasting)."""
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return Problem("no answer (a host that drops packets?)", lasting=False)
    if code is not grpc.StatusCode.UNAVAILABLE:
        return None
    return connection_problem(details, target, tls) or Problem(details, lasting=False)


class ServerUnreachable(ClientError):
    """A call that never reached the server; ``problem`` says why (``problem.lasting``: waiting
    will not help)."""

    def __init__(self, code: grpc.StatusCode, target: str, problem: Problem, waited: float | None = None) -> None:
        suffix = f" (waited {waited:g} s)" if waited is not None else ""
        super().__init__(code, f"cannot reach {target}: {problem.reason}{suffix}")
        self.problem = problem


def worth_waiting(outcome: str | ClientError) -> bool:
    """health(wait=True): ask again while the server is not serving yet or not listening yet."""
    if isinstance(outcome, ServerUnreachable):
        return not outcome.problem.lasting
    return outcome != "SERVING" and not isinstance(outcome, ClientError)
