"""Channel settings shared by the sync client, the asyncio client and the load tester.

Robustness comes from gRPC's own service config, not hand-written loops:
- ``retryPolicy`` (gRFC A6): exponential backoff with full jitter on UNAVAILABLE (and
  CANCELLED, see ``RETRYABLE_CODES``);
- ``waitForReady``: a call made while the server is unreachable waits for it (within its
  deadline) instead of failing at once;
- ``healthCheckConfig`` (gRFC A17): the channel watches the server's health service and sends
  calls only while it reports SERVING, so a server that is still loading its model, or draining
  before a restart, is waited for instead of answering UNAVAILABLE. This needs the health
  service to be reachable without a token (the server's default); pass ``health_check=False``
  otherwise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

SERVICE = "mnist_serving.v1.Classifier"
DEFAULT_TARGET = "127.0.0.1:8500"
TARGET_ENV = "MNIST_CLIENT_TARGET"
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 4
MAX_RETRIES = 4  # gRPC caps maxAttempts (first try + retries) at 5
# The largest message the client sends or accepts: the server's default receive limit
# (mnist-server --max-receive-message-bytes). Chunking keeps requests far below it.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
INITIAL_BACKOFF_S = 0.2
MAX_BACKOFF_S = 2.0
BACKOFF_MULTIPLIER = 2.0
# A call can only be retried while its request is still buffered; keep whole chunks buffered.
PER_CALL_RETRY_BUFFER_BYTES = 16 * 1024 * 1024
KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000
# Reconnect quickly to a restarted server (gRPC's default backoff grows to two minutes).
INITIAL_RECONNECT_BACKOFF_MS = 200
MAX_RECONNECT_BACKOFF_MS = 2_000

# UNAVAILABLE: the server is down, loading or draining. CANCELLED: gRPC core answers it for
# calls that reached a server as it shut down before any handler took them (grpc/grpc#41785).
# Every method of our API is idempotent (classification has no side effects): retrying is safe.
RETRYABLE_CODES = ["UNAVAILABLE", "CANCELLED"]

PemSource = str | os.PathLike | bytes


@dataclass(frozen=True)
class TlsConfig:
    """TLS for the channel; give ``client_cert`` and ``client_key`` for mutual TLS.

    Each PEM may be a path or the PEM bytes. ``root_ca=None`` trusts the system roots.
    ``server_name`` overrides the name checked against the server's certificate (for a
    server reached by IP address whose certificate names a host).

    >>> TlsConfig(root_ca="certs/ca.pem", client_cert="certs/me.pem", client_key="certs/me.key")
    ... # doctest: +ELLIPSIS
    TlsConfig(root_ca='certs/ca.pem', ...)
    """

    root_ca: PemSource | None = None
    client_cert: PemSource | None = None
    client_key: PemSource | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("mutual TLS needs both client_cert and client_key")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read_pem(self.root_ca),
            private_key=_read_pem(self.client_key),
            certificate_chain=_read_pem(self.client_cert),
        )


def _read_pem(source: PemSource | None) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    return Path(source).read_bytes()


def resolve_tls(tls: TlsConfig | bool | None) -> TlsConfig | None:
    if tls is True:
        return TlsConfig()
    if tls is False or tls is None:
        return None
    return tls


def service_config(retries: int, health_check: bool = True) -> str:
    """The service config JSON: wait for a ready (and healthy) server, retry UNAVAILABLE."""
    if not 0 <= retries <= MAX_RETRIES:
        raise ValueError(f"retries must be between 0 and {MAX_RETRIES} (gRPC allows 5 attempts), got {retries}")
    config: dict[str, Any] = {}
    if health_check:  # round_robin: the policy that honours client-side health checks
        config["loadBalancingConfig"] = [{"round_robin": {}}]
        config["healthCheckConfig"] = {"serviceName": SERVICE}
    method: dict[str, Any] = {"name": [{"service": SERVICE}], "waitForReady": True}
    if retries:
        method["retryPolicy"] = {
            "maxAttempts": retries + 1,
            "initialBackoff": f"{INITIAL_BACKOFF_S}s",
            "maxBackoff": f"{MAX_BACKOFF_S}s",
            "backoffMultiplier": BACKOFF_MULTIPLIER,
            "retryableStatusCodes": RETRYABLE_CODES,
        }
    config["methodConfig"] = [method]
    return json.dumps(config)


def channel_options(
    retries: int, tls: TlsConfig | None, *, health_check: bool = True, own_connection: bool = False
) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.service_config", service_config(retries, health_check)),
        ("grpc.enable_retries", 1 if retries else 0),
        ("grpc.per_rpc_retry_buffer_size", PER_CALL_RETRY_BUFFER_BYTES),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.initial_reconnect_backoff_ms", INITIAL_RECONNECT_BACKOFF_MS),
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
        ("grpc.primary_user_agent", "mnist-client"),
    ]
    if tls is not None and tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    if own_connection:  # channels otherwise share one connection per target
        options.append(("grpc.use_local_subchannel_pool", 1))
    return options


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the bearer token (sent on every call, TLS or not)."""
    if token is None:
        return ()
    token = token.strip()
    if not token:
        raise ValueError("token is empty")
    return (("authorization", f"Bearer {token}"),)


def sync_channel(target: str, *, retries: int, tls: TlsConfig | None, health_check: bool = True) -> grpc.Channel:
    options = channel_options(retries, tls, health_check=health_check)
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, tls.credentials(), options=options)


def aio_channel(
    target: str, *, retries: int, tls: TlsConfig | None, health_check: bool = True, own_connection: bool = False
) -> grpc.aio.Channel:
    options = channel_options(retries, tls, health_check=health_check, own_connection=own_connection)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, tls.credentials(), options=options)


def default_target() -> str:
    return os.environ.get(TARGET_ENV) or DEFAULT_TARGET
