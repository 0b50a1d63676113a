"""gRPC health checking (grpc.health.v1) as grpcio-health-checking serves it, except that a check of a
service the server does not know says so: the package's own NOT_FOUND carries no message, which left
`mnist-client health --service typo` printing `NOT_FOUND: ` and nothing else."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2


class HealthServicer(health.aio.HealthServicer):
    def __init__(self) -> None:
        super().__init__()
        self._services: list[str] = []  # in the order they were first set

    async def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        if service not in self._services:
            self._services.append(service)
        await super().set(service, status)

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext):
        if request.service not in self._services:
            known = ", ".join(repr(name) + (" (the whole server)" if not name else "") for name in self._services)
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no health status for service {request.service!r}; known: {known}"
            )
        return await super().Check(request, context)
