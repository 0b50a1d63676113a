"""What both clients share: validated call settings and health-check plumbing."""

from __future__ import annotations

from dataclasses import dataclass

from grpc_health.v1 import health_pb2

from mnist_client.channel import DEFAULT_RETRIES, DEFAULT_TIMEOUT, TlsConfig, auth_metadata, default_target, resolve_tls
from mnist_client.requests import DEFAULT_CHUNK_SIZE, model_spec
from mnist_serving.v1 import classifier_pb2 as pb

DEFAULT_MAX_CHUNKS_IN_FLIGHT = 8


@dataclass(frozen=True)
class ClientSettings:
    target: str
    timeout: float
    retries: int
    tls: TlsConfig | None
    metadata: tuple[tuple[str, str], ...]
    model: str
    chunk_size: int
    max_chunks_in_flight: int
    health_check: bool

    @classmethod
    def build(
        cls,
        target: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        tls: TlsConfig | bool | None = None,
        token: str | None = None,
        model: str = "",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_chunks_in_flight: int = DEFAULT_MAX_CHUNKS_IN_FLIGHT,
        health_check: bool = True,
    ) -> ClientSettings:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if chunk_size < 1 or max_chunks_in_flight < 1:
            raise ValueError("chunk_size and max_chunks_in_flight must be at least 1")
        return cls(
            target=target or default_target(),
            timeout=timeout,
            retries=retries,
            tls=resolve_tls(tls),
            metadata=auth_metadata(token),
            model=model,
            chunk_size=chunk_size,
            max_chunks_in_flight=max_chunks_in_flight,
            health_check=health_check,
        )

    def deadline(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    def spec(self, model: str | None, version: int) -> pb.ModelSpec | None:
        return model_spec(self.model if model is None else model, version)


def health_request(service: str) -> health_pb2.HealthCheckRequest:
    return health_pb2.HealthCheckRequest(service=service)


def health_status_name(response: health_pb2.HealthCheckResponse) -> str:
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
