"""Who may call: TLS / mutual TLS credentials for the gRPC port and optional bearer-token auth.

TLS (`--tls-cert`, `--tls-key`) encrypts the port; `--tls-client-ca` also requires every client
to present a certificate signed by that CA (mutual TLS), checked by gRPC during the handshake.

Bearer tokens (`--auth-token-file`): every call must carry `authorization: Bearer <token>`
matching a line of the file. Status codes follow the gRPC status-code definitions (and RFC 6750's
401/403 split):
- UNAUTHENTICATED: no valid credentials. A missing header, a header that is not `Bearer <token>`,
  and a token that matches no line all mean the caller cannot be identified; gRPC's definition of
  PERMISSION_DENIED says it "must not be used if the caller can not be identified".
- PERMISSION_DENIED: the token is valid (the caller is identified) but its line limits it to
  other services, e.g. `s3cr3t... grpc.health.v1.Health` for a monitoring job.
Tokens are compared in constant time: SHA-256 digests (equal length) through hmac.compare_digest,
against every configured token without stopping at a match, so timing tells nothing about how
much of a guess was right or which line matched. Services in `--auth-exempt-services` (default:
health and reflection, which orchestrators and grpcurl call without secrets) need no token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from .config import ConfigError, Settings
from .metrics import NO_MODEL, ServerMetrics

log = logging.getLogger(__name__)

BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)  # RFC 6750 b64token
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
MIN_TOKEN_LENGTH = 16  # a guessable token is a configuration error, not a choice
MISSING = "missing credentials: send `authorization: Bearer <token>` (gRPC metadata or HTTP header)"
MALFORMED = "malformed credentials: the `authorization` metadata must be `Bearer <token>`"
INVALID = "invalid credentials: the bearer token is not valid for this server"


@dataclass(frozen=True)
class Token:
    digest: bytes
    services: frozenset[str]  # empty: every service

    def allows(self, service: str) -> bool:
        return not self.services or service in self.services


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def load_tokens(path: Path) -> tuple[Token, ...]:
    """The token file: one `TOKEN [SERVICE ...]` per line; blank lines and `#` comments ignored.
    Several lines let tokens rotate (add the new one, roll the clients, remove the old one)."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--auth-token-file {str(path)!r} cannot be read: {exc}") from None
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        token, services = fields[0], fields[1:]
        if not TOKEN_PATTERN.match(token) or len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"--auth-token-file {str(path)!r} line {number}: a token must be at least "
                f"{MIN_TOKEN_LENGTH} characters of A-Z a-z 0-9 - . _ ~ + / (then optional '=')"
            )
        tokens.append(Token(_digest(token.encode()), frozenset(services)))
    if not tokens:
        raise ConfigError(f"--auth-token-file {str(path)!r} holds no token")
    return tuple(tokens)


def _check_pem(path: Path, flag: str) -> None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{flag} {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{flag} {str(path)!r} is not a PEM file")


def validate_security_settings(settings: Settings) -> None:
    """Start-up checks naming the flag: files readable, key matches certificate, CA parses."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together: give both or neither")
    if settings.tls_client_ca is not None and settings.tls_cert is None:
        raise ConfigError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    if settings.tls_cert is not None and settings.tls_key is not None:
        _check_pem(settings.tls_cert, "--tls-cert")
        _check_pem(settings.tls_key, "--tls-key")
        try:  # the stdlib's OpenSSL spots a key that does not belong to the certificate
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(settings.tls_cert, settings.tls_key)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"--tls-cert/--tls-key: {exc.reason or exc} (does the key belong to the certificate?)"
            ) from None
    if settings.tls_client_ca is not None:
        _check_pem(settings.tls_client_ca, "--tls-client-ca")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=settings.tls_client_ca)
        except ssl.SSLError as exc:
            raise ConfigError(f"--tls-client-ca: not a CA certificate bundle ({exc.reason or exc})") from None
    if settings.auth_token_file is not None:
        load_tokens(settings.auth_token_file)


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials for the gRPC port, or None for a plaintext port."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    client_ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def service_of(method: str) -> str:
    """`/pkg.Service/Method` -> `pkg.Service`."""
    return method.lstrip("/").split("/", 1)[0]


class TokenVerifier:
    """Decides one call's fate from its `authorization` values and the service it calls; the gRPC
    interceptor below and the HTTP server (web/) both ask it, so a token means the same on both ports."""

    def __init__(self, tokens: Sequence[Token], exempt_services: Sequence[str]):
        self._tokens = tuple(tokens)
        self._exempt = frozenset(exempt_services)

    def verdict(self, values: Sequence[str | bytes], service: str) -> tuple[grpc.StatusCode, str] | None:
        """None when the call may go on, else the status to refuse it with."""
        if service in self._exempt:
            return None
        if not values:
            return grpc.StatusCode.UNAUTHENTICATED, MISSING
        value = values[0].decode("latin-1") if isinstance(values[0], bytes) else values[0]
        match = BEARER.match(value) if len(values) == 1 else None
        if match is None:
            return grpc.StatusCode.UNAUTHENTICATED, MALFORMED
        presented = _digest(match.group(1).encode())
        found = None
        for token in self._tokens:  # no early exit: the time does not depend on which one matches
            if hmac.compare_digest(presented, token.digest):
                found = token
        if found is None:
            return grpc.StatusCode.UNAUTHENTICATED, INVALID
        if not found.allows(service):
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"this token may not call {service}; it is limited to {', '.join(sorted(found.services))}",
            )
        return None


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without a valid token before any request byte is parsed. Put it first in the
    interceptor list, so refused calls never reach the other interceptors."""

    def __init__(self, verifier: TokenVerifier, metrics: ServerMetrics):
        self._verifier = verifier
        self._requests = metrics.requests

    def verdict(self, metadata: Sequence[tuple[str, Any]] | None, service: str) -> tuple[grpc.StatusCode, str] | None:
        return self._verifier.verdict([value for key, value in metadata or () if key == "authorization"], service)

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        refusal = self.verdict(handler_call_details.invocation_metadata, service_of(method))
        handler = await continuation(handler_call_details)
        if refusal is None or handler is None:  # unknown methods: gRPC's UNIMPLEMENTED
            return handler
        code, message = refusal
        self._requests.labels(method.lstrip("/"), NO_MODEL, code.name).inc()
        log.debug("refused %s: %s", method, message)
        return _refusing_handler(handler, code, message)


def _refusing_handler(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that aborts at once; the request is never parsed
    (no deserializer: an unauthenticated caller's bytes stay bytes)."""

    async def refuse(request, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    serializer = handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, response_serializer=serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse, response_serializer=serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, response_serializer=serializer)
    return grpc.stream_stream_rpc_method_handler(refuse, response_serializer=serializer)


def token_verifier(settings: Settings) -> TokenVerifier | None:
    """None without --auth-token-file; warns when tokens would cross the network in clear text."""
    if settings.auth_token_file is None:
        return None
    tokens = load_tokens(settings.auth_token_file)
    if settings.tls_cert is None:
        log.warning(
            "--auth-token-file without --tls-cert: bearer tokens travel unencrypted; "
            "use TLS unless a proxy in front terminates it"
        )
    log.info(
        "bearer-token auth on: %d token(s); open without a token: %s",
        len(tokens),
        ", ".join(sorted(settings.auth_exempt_services)) or "nothing",
    )
    return TokenVerifier(tokens, settings.auth_exempt_services)


def auth_interceptors(verifier: TokenVerifier | None, metrics: ServerMetrics) -> list[grpc.aio.ServerInterceptor]:
    return [] if verifier is None else [BearerTokenInterceptor(verifier, metrics)]


def http_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The gRPC port's certificate on the HTTP port too (tokens never travel in clear). With
    --tls-client-ca a client certificate is verified when presented but not required during the
    handshake: probes and Prometheus reach /healthz, /readyz and /metrics without one, and every
    other route refuses a connection without a verified certificate (web/server.py)."""
    if settings.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_client_ca is not None:
        context.load_verify_locations(cafile=settings.tls_client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
