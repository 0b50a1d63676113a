"""``AsyncMnistClient``: the asyncio twin of ``MnistClient`` (grpc.aio)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable

import grpc
from grpc_health.v1 import health_pb2_grpc

from mnist_client.channel import DEFAULT_RETRIES, DEFAULT_TIMEOUT, TlsConfig, aio_channel
from mnist_client.diagnose import (
    HEALTH_POLL_S,
    PROBE_TIMEOUT_S,
    WAITING_CODES,
    Problem,
    ServerUnreachable,
    probe_result,
    worth_waiting,
)
from mnist_client.errors import ClientError, from_rpc_error
from mnist_client.requests import DEFAULT_CHUNK_SIZE, Images, build_request, chunk_requests, image_count, normalize
from mnist_client.results import ModelInfo, Prediction, predictions_from
from mnist_client.settings import DEFAULT_MAX_CHUNKS_IN_FLIGHT, ClientSettings, health_request, health_status_name
from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1.classifier_pb2_grpc import ClassifierStub


class AsyncMnistClient:
    """The asyncio client; same options and behaviour as ``MnistClient``.

    Create it inside a running event loop::

        async with AsyncMnistClient("127.0.0.1:8500") as client:
            predictions = await client.classify(images)
            async for reply in client.classify_stream(batches):
                ...
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        tls: TlsConfig | bool | None = None,
        token: str | None = None,
        model: str = "",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_chunks_in_flight: int = DEFAULT_MAX_CHUNKS_IN_FLIGHT,
        health_check: bool = True,
    ) -> None:
        self._settings = ClientSettings.build(
            target,
            timeout=timeout,
            retries=retries,
            tls=tls,
            token=token,
            model=model,
            chunk_size=chunk_size,
            max_chunks_in_flight=max_chunks_in_flight,
            health_check=health_check,
        )
        self._channel = aio_channel(
            self._settings.target, retries=retries, tls=self._settings.tls, health_check=health_check
        )
        self._stub = ClassifierStub(self._channel)
        # Health checks go over a channel that does not itself wait for the server to be healthy.
        self._health_channel = aio_channel(self._settings.target, retries=0, tls=self._settings.tls, health_check=False)
        self._health = health_pb2_grpc.HealthStub(self._health_channel)
        self._reached = False  # has the server ever answered? (until then, failures are explained)

    @property
    def target(self) -> str:
        return self._settings.target

    async def classify(
        self,
        images: Images,
        *,
        model: str | None = None,
        version: int = 0,
        timeout: float | None = None,
        chunk_size: int | None = None,
    ) -> list[Prediction]:
        """One ``Prediction`` per image, in input order (see ``MnistClient.classify``)."""
        batch = normalize(images)
        spec = self._settings.spec(model, version)
        requests = list(chunk_requests(batch, chunk_size or self._settings.chunk_size, spec))
        deadline = self._settings.deadline(timeout)
        await self._fail_fast(deadline)
        slots = asyncio.Semaphore(self._settings.max_chunks_in_flight)

        async def send(request: pb.ClassifyRequest, expected: int) -> list[Prediction]:
            async with slots:
                response = await self._stub.Classify(request, timeout=deadline, metadata=self._settings.metadata)
            return predictions_from(response, expected)

        tasks = [asyncio.ensure_future(send(r, image_count(r))) for r in requests]
        try:
            chunks = await asyncio.gather(*tasks)
            self._reached = True
        except grpc.RpcError as error:
            raise await self._error(error, deadline) from None
        finally:
            for task in tasks:
                task.cancel()
        return [prediction for chunk in chunks for prediction in chunk]

    async def classify_stream(
        self,
        inputs: Iterable[Images] | AsyncIterable[Images],
        *,
        model: str | None = None,
        version: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[list[Prediction]]:
        """Classify each element of ``inputs`` over one stream (see ``MnistClient.classify_stream``)."""
        spec = self._settings.spec(model, version)
        expected: deque[int] = deque()
        local_error: list[ClientError] = []

        async def requests() -> AsyncIterator[pb.ClassifyRequest]:
            index = 0
            async for images in _aiter(inputs):
                try:
                    batch = normalize(images)
                except ClientError as error:  # ends the stream; raised after earlier replies
                    local_error.append(error)
                    return
                expected.append(len(batch))
                yield build_request(batch, spec, request_id=str(index))
                index += 1

        deadline = self._settings.deadline(timeout)
        await self._fail_fast(deadline)
        call = self._stub.ClassifyStream(requests(), timeout=deadline, metadata=self._settings.metadata)
        try:
            async for response in call:
                yield predictions_from(response, expected.popleft())
        except grpc.RpcError as error:
            raise await self._error(error, deadline) from None
        finally:
            call.cancel()
        if local_error:
            raise local_error[0]

    async def model_info(
        self, *, model: str | None = None, version: int = 0, timeout: float | None = None
    ) -> ModelInfo:
        """What the server serves."""
        request = pb.GetModelInfoRequest(model=self._settings.spec(model, version))
        deadline = self._settings.deadline(timeout)
        await self._fail_fast(deadline)
        try:
            response = await self._stub.GetModelInfo(request, timeout=deadline, metadata=self._settings.metadata)
        except grpc.RpcError as error:
            raise await self._error(error, deadline) from None
        self._reached = True
        return ModelInfo.from_message(response)

    async def health(self, service: str = "", *, wait: bool = False, timeout: float | None = None) -> str:
        """The gRPC health status name, e.g. ``"SERVING"`` (see ``MnistClient.health``)."""
        give_up = time.monotonic() + self._settings.deadline(timeout)
        while True:
            remaining = give_up - time.monotonic()
            try:
                outcome: str | ClientError = await self._check(service, max(remaining, 0.05))
            except ClientError as error:
                outcome = error
            if not (wait and worth_waiting(outcome)) or remaining <= HEALTH_POLL_S:
                break
            await asyncio.sleep(HEALTH_POLL_S)
        if isinstance(outcome, ClientError):
            raise outcome
        return outcome

    async def _check(self, service: str, timeout: float) -> str:
        """One health check that does not wait for a connection."""
        try:
            response = await self._health.Check(
                health_request(service), wait_for_ready=False, timeout=timeout, metadata=self._settings.metadata
            )
        except grpc.RpcError as error:
            # may probe the port with a blocking socket: off the event loop
            problem = await asyncio.to_thread(
                probe_result, error.code(), error.details() or "", self.target, self._settings.tls
            )
            if problem is not None:
                raise ServerUnreachable(error.code(), self.target, problem) from None
            self._reached = True
            raise from_rpc_error(error) from None
        self._reached = True
        return health_status_name(response)

    async def _problem(self, timeout: float) -> Problem | None:
        try:
            await self._check("", timeout)
        except ServerUnreachable as error:
            return error.problem
        except ClientError:
            pass  # it answered (e.g. asks for a token): the connection works
        return None

    async def _fail_fast(self, deadline: float) -> None:
        """See ``MnistClient._fail_fast``."""
        if not self._reached:
            problem = await self._problem(min(deadline, PROBE_TIMEOUT_S))
            if problem is not None and problem.lasting:
                raise ServerUnreachable(grpc.StatusCode.UNAVAILABLE, self.target, problem)

    async def _error(self, error: grpc.RpcError, deadline: float) -> ClientError:
        failed = from_rpc_error(error)
        if failed.code in WAITING_CODES and not self._reached:
            problem = await self._problem(PROBE_TIMEOUT_S)
            if problem is not None:
                waited = deadline if failed.code is grpc.StatusCode.DEADLINE_EXCEEDED else None
                return ServerUnreachable(failed.code, self.target, problem, waited)
        return failed

    async def close(self) -> None:
        await self._channel.close()
        await self._health_channel.close()

    async def __aenter__(self) -> AsyncMnistClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def _aiter(inputs: Iterable[Images] | AsyncIterable[Images]) -> AsyncIterator[Images]:
    if isinstance(inputs, AsyncIterable):
        async for item in inputs:
            yield item
    else:
        for item in inputs:
            yield item
