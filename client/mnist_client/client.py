"""``MnistClient``: the synchronous client."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator

import grpc
from grpc_health.v1 import health_pb2_grpc

from mnist_client.channel import DEFAULT_RETRIES, DEFAULT_TIMEOUT, TlsConfig, sync_channel
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


class MnistClient:
    """A connection to an mnist-serving server.

    >>> from mnist_client import MnistClient
    >>> with MnistClient("127.0.0.1:8500") as client:          # doctest: +SKIP
    ...     [p.label for p in client.classify(["seven.png", "two.jpg"])]
    [7, 2]

    Every call has a deadline (``timeout`` seconds, per call or per chunk) and is retried
    ``retries`` times with exponential backoff and jitter when the server answers UNAVAILABLE;
    while the server is unreachable (restarting) calls wait for it within their deadline. Where
    waiting cannot help (the HTTP port, TLS settings the server does not take) the first call fails
    at once, and a call that never reached the server says why (``ServerUnreachable``).
    ``tls`` is ``True`` (system roots) or a ``TlsConfig``; ``token`` is sent as
    ``authorization: Bearer <token>``. ``target`` defaults to ``$MNIST_CLIENT_TARGET`` or
    ``127.0.0.1:8500``. Failures raise ``ClientError``.

    With ``health_check`` (the default) the channel watches the server's gRPC health service
    and holds calls (within their deadline) while the server is loading its model or draining
    before a restart; turn it off for a server whose health service needs a token.
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
        self._channel = sync_channel(
            self._settings.target, retries=retries, tls=self._settings.tls, health_check=health_check
        )
        self._stub = ClassifierStub(self._channel)
        # Health checks go over a channel that does not itself wait for the server to be healthy.
        self._health_channel = sync_channel(
            self._settings.target, retries=0, tls=self._settings.tls, health_check=False
        )
        self._health = health_pb2_grpc.HealthStub(self._health_channel)
        self._reached = False  # has the server ever answered? (until then, failures are explained)

    @property
    def target(self) -> str:
        return self._settings.target

    def classify(
        self,
        images: Images,
        *,
        model: str | None = None,
        version: int = 0,
        timeout: float | None = None,
        chunk_size: int | None = None,
    ) -> list[Prediction]:
        """One ``Prediction`` per image, in input order.

        ``images``: a numpy array [N, 28, 28] or [28, 28] (uint8, or float in [0, 1]),
        PNG/JPEG bytes, a file path, a PIL image, or a list of those. More than
        ``chunk_size`` images are sent as several concurrent requests.

        >>> client.classify(np.zeros((3, 28, 28), np.uint8))[0].label   # doctest: +SKIP
        1
        """
        batch = normalize(images)
        spec = self._settings.spec(model, version)
        requests = chunk_requests(batch, chunk_size or self._settings.chunk_size, spec)
        deadline = self._settings.deadline(timeout)
        self._fail_fast(deadline)
        window: deque[tuple[grpc.Future, int]] = deque()
        results: list[Prediction] = []
        try:
            for request in requests:
                if len(window) >= self._settings.max_chunks_in_flight:
                    results.extend(_collect(*window.popleft()))
                future = self._stub.Classify.future(request, timeout=deadline, metadata=self._settings.metadata)
                window.append((future, image_count(request)))
            while window:
                results.extend(_collect(*window.popleft()))
            self._reached = True
        except grpc.RpcError as error:
            raise self._error(error, deadline) from None
        finally:
            for future, _ in window:
                future.cancel()
        return results

    def classify_stream(
        self, inputs: Iterable[Images], *, model: str | None = None, version: int = 0, timeout: float | None = None
    ) -> Iterator[list[Prediction]]:
        """Classify each element of ``inputs`` over one stream; yields its predictions in order.

        ``timeout`` bounds the whole stream. Iteration stops with ``ClientError`` at the first
        input that fails (the server reports it in-stream).

        >>> for predictions in client.classify_stream(frames):   # doctest: +SKIP
        ...     print(predictions[0].label)
        """
        spec = self._settings.spec(model, version)
        expected: deque[int] = deque()
        local_error: list[ClientError] = []

        def requests() -> Iterator[pb.ClassifyRequest]:
            for index, images in enumerate(inputs):
                try:
                    batch = normalize(images)
                except ClientError as error:  # ends the stream; raised after earlier replies
                    local_error.append(error)
                    return
                expected.append(len(batch))
                yield build_request(batch, spec, request_id=str(index))

        deadline = self._settings.deadline(timeout)
        self._fail_fast(deadline)
        call = self._stub.ClassifyStream(requests(), timeout=deadline, metadata=self._settings.metadata)
        try:
            for response in call:
                yield predictions_from(response, expected.popleft())
        except grpc.RpcError as error:
            raise self._error(error, deadline) from None
        finally:
            call.cancel()
        if local_error:
            raise local_error[0]

    def model_info(self, *, model: str | None = None, version: int = 0, timeout: float | None = None) -> ModelInfo:
        """What the server serves.

        >>> client.model_info().class_names[:3]   # doctest: +SKIP
        ('0', '1', '2')
        """
        request = pb.GetModelInfoRequest(model=self._settings.spec(model, version))
        deadline = self._settings.deadline(timeout)
        self._fail_fast(deadline)
        try:
            response = self._stub.GetModelInfo(request, timeout=deadline, metadata=self._settings.metadata)
        except grpc.RpcError as error:
            raise self._error(error, deadline) from None
        self._reached = True
        return ModelInfo.from_message(response)

    def health(self, service: str = "", *, wait: bool = False, timeout: float | None = None) -> str:
        """The gRPC health status name: ``"SERVING"``, ``"NOT_SERVING"``, ...

        Without ``wait`` it answers at once: an unreachable server raises ``ClientError``
        (UNAVAILABLE, saying why). With ``wait`` it asks again until the server says SERVING or
        ``timeout`` passes (then returns the last status, or raises the last error); it stops at
        once where waiting cannot help (an unknown service, the HTTP port, TLS settings).

        >>> client.health()   # doctest: +SKIP
        'SERVING'
        """
        give_up = time.monotonic() + self._settings.deadline(timeout)
        while True:
            remaining = give_up - time.monotonic()
            try:
                outcome: str | ClientError = self._check(service, max(remaining, 0.05))
            except ClientError as error:
                outcome = error
            if not (wait and worth_waiting(outcome)) or remaining <= HEALTH_POLL_S:
                break
            time.sleep(HEALTH_POLL_S)
        if isinstance(outcome, ClientError):
            raise outcome
        return outcome

    def _check(self, service: str, timeout: float) -> str:
        """One health check that does not wait for a connection."""
        try:
            response = self._health.Check(
                health_request(service), wait_for_ready=False, timeout=timeout, metadata=self._settings.metadata
            )
        except grpc.RpcError as error:
            problem = probe_result(error.code(), error.details() or "", self.target, self._settings.tls)
            if problem is not None:
                raise ServerUnreachable(error.code(), self.target, problem) from None
            self._reached = True
            raise from_rpc_error(error) from None
        self._reached = True
        return health_status_name(response)

    def _problem(self, timeout: float) -> Problem | None:
        """Why the server cannot be reached right now; None when it answers."""
        try:
            self._check("", timeout)
        except ServerUnreachable as error:
            return error.problem
        except ClientError:
            pass  # it answered (e.g. asks for a token): the connection works
        return None

    def _fail_fast(self, deadline: float) -> None:
        """Until the server first answers: fail at once where waiting cannot help (the HTTP port,
        TLS settings the server does not take). A refused connection, which is also what a
        server still starting looks like, is left to the call, which waits for it."""
        if not self._reached:
            problem = self._problem(min(deadline, PROBE_TIMEOUT_S))
            if problem is not None and problem.lasting:
                raise ServerUnreachable(grpc.StatusCode.UNAVAILABLE, self.target, problem)

    def _error(self, error: grpc.RpcError, deadline: float) -> ClientError:
        """A failed call's ``ClientError``; one that never reached the server says why."""
        failed = from_rpc_error(error)
        if failed.code in WAITING_CODES and not self._reached:
            problem = self._problem(PROBE_TIMEOUT_S)
            if problem is not None:
                waited = deadline if failed.code is grpc.StatusCode.DEADLINE_EXCEEDED else None
                return ServerUnreachable(failed.code, self.target, problem, waited)
        return failed

    def close(self) -> None:
        self._channel.close()
        self._health_channel.close()

    def __enter__(self) -> MnistClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _collect(future: grpc.Future, expected: int) -> list[Prediction]:
    return predictions_from(future.result(), expected)
