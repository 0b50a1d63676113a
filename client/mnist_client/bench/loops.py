"""The four ways a worker sends load: closed or open loop, unary or streaming.

Closed loop: each caller sends its next request when the last one answered. Open loop:
requests leave on a fixed schedule (``start + k / rate``) whatever the server does, and
latency counts from the scheduled time, so queueing in the client shows up as latency.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import grpc

from mnist_client.bench.config import WorkerPlan
from mnist_client.bench.recorder import Recorder
from mnist_client.errors import code_from_number
from mnist_serving.v1 import classifier_pb2 as pb

Metadata = tuple[tuple[str, str], ...]


async def unary(call, payload: bytes, timeout: float, metadata: Metadata) -> grpc.StatusCode:
    try:
        await call(payload, timeout=timeout, metadata=metadata, wait_for_ready=False)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def stream_code(response: pb.ClassifyResponse) -> grpc.StatusCode:
    if response.HasField("error") and response.error.code:
        return code_from_number(response.error.code)
    return grpc.StatusCode.OK


async def closed_unary(call, plan: WorkerPlan, recorder: Recorder, caller: int, metadata: Metadata) -> None:
    payloads, timeout = plan.payloads, plan.config.timeout
    k = caller
    while recorder.may_send(sent_at := time.monotonic()):
        measured = recorder.begin(sent_at)
        code = await unary(call, payloads[k % len(payloads)], timeout, metadata)
        recorder.finish(measured, sent_at, code)
        k += 1


async def open_unary(calls, plan: WorkerPlan, recorder: Recorder, start: float, metadata: Metadata) -> None:
    slots = asyncio.Semaphore(plan.concurrency)
    payloads, timeout = plan.payloads, plan.config.timeout
    pending: set[asyncio.Task] = set()

    async def one(call, payload: bytes, scheduled: float, measured: bool) -> None:
        async with slots:
            code = await unary(call, payload, timeout, metadata)
        recorder.finish(measured, scheduled, code)

    k, rate = 0, plan.rate or 1.0  # open-loop plans always have a rate
    while recorder.may_send(scheduled := start + k / rate):
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(
            one(calls[k % len(calls)], payloads[k % len(payloads)], scheduled, recorder.begin(scheduled))
        )
        pending.add(task)
        task.add_done_callback(pending.discard)
        k += 1
    if pending:
        await asyncio.gather(*pending)


async def closed_stream(call, plan: WorkerPlan, recorder: Recorder, caller: int, metadata: Metadata) -> None:
    """One stream per caller; a broken stream is counted as an error and reopened."""
    payloads = plan.payloads
    k = caller
    while recorder.may_send(time.monotonic()):
        stream = call(timeout=None, metadata=metadata, wait_for_ready=False)
        try:
            while recorder.may_send(sent_at := time.monotonic()):
                measured = recorder.begin(sent_at)
                k += 1
                try:
                    await stream.write(payloads[k % len(payloads)])
                    response = await stream.read()
                except grpc.aio.AioRpcError as error:
                    recorder.finish(measured, sent_at, error.code())
                    break
                if response is grpc.aio.EOF:
                    recorder.finish(measured, sent_at, await stream.code())
                    break
                recorder.finish(measured, sent_at, stream_code(response))
            else:
                await stream.done_writing()
        finally:
            stream.cancel()


async def open_stream(calls, plan: WorkerPlan, recorder: Recorder, start: float, metadata: Metadata) -> None:
    """``concurrency`` streams; the k-th scheduled request goes to stream ``k mod streams``."""
    streams = [
        calls[i % len(calls)](timeout=None, metadata=metadata, wait_for_ready=False) for i in range(plan.concurrency)
    ]
    waiting: list[deque[tuple[float, bool]]] = [deque() for _ in streams]

    async def read_replies(stream, queue: deque) -> None:
        try:
            async for response in stream:
                scheduled, measured = queue.popleft()
                recorder.finish(measured, scheduled, stream_code(response))
        except grpc.aio.AioRpcError:
            pass  # settled below with the stream's status

    readers = [asyncio.create_task(read_replies(s, q)) for s, q in zip(streams, waiting)]
    k, rate = 0, plan.rate or 1.0  # open-loop plans always have a rate
    try:
        while recorder.may_send(scheduled := start + k / rate):
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            index = k % len(streams)
            waiting[index].append((scheduled, recorder.begin(scheduled)))
            if not streams[index].done():
                try:
                    await streams[index].write(plan.payloads[k % len(plan.payloads)])
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    pass  # the stream ended: settled below with its status
            k += 1
        for stream in streams:
            if not stream.done():
                await stream.done_writing()
        await asyncio.wait(readers, timeout=plan.config.timeout)
    finally:
        for stream in streams:
            stream.cancel()
    for stream, queue in zip(streams, waiting):  # requests a broken stream never answered
        code = await stream.code() if stream.done() else grpc.StatusCode.DEADLINE_EXCEEDED
        if code is grpc.StatusCode.OK:
            code = grpc.StatusCode.UNKNOWN
        while queue:
            scheduled, measured = queue.popleft()
            recorder.finish(measured, scheduled, code)
