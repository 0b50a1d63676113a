"""One load-generating process: an asyncio loop driving its share of the run.

Requests are serialized once up front and sent as bytes (no per-call protobuf work), so the
process spends its time in gRPC itself. ``time.monotonic()`` is system-wide on Linux, so the
parent lines up every worker's measurement window with one shared start time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mnist_client.bench import loops
from mnist_client.bench.config import WorkerPlan
from mnist_client.bench.recorder import Recorder
from mnist_client.channel import aio_channel, auth_metadata
from mnist_serving.v1 import classifier_pb2 as pb

CLASSIFY = "/mnist_serving.v1.Classifier/Classify"
CLASSIFY_STREAM = "/mnist_serving.v1.Classifier/ClassifyStream"
START_TIMEOUT_S = 120.0


async def run(plan: WorkerPlan, ready: Any, go: Any, start_at: Any, counters: Any) -> dict:
    config = plan.config
    channels = [
        aio_channel(config.target, retries=0, tls=config.tls, health_check=False, own_connection=True)
        for _ in range(config.connections)
    ]
    try:
        for channel in channels:  # connecting is bounded by the per-call timeout
            try:
                await asyncio.wait_for(channel.channel_ready(), config.timeout)
            except TimeoutError:
                raise ConnectionError(f"cannot connect to {config.target} within {config.timeout:g} s") from None
        ready.put(plan.index)
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, go.wait, START_TIMEOUT_S):
            raise TimeoutError("the run was never started")
        start = start_at.value
        end = start + config.warmup + config.duration if config.duration is not None else None
        recorder = Recorder(start + config.warmup, end, plan.requests, counters, plan.index)
        cpu_start = time.process_time()
        await _drive(plan, channels, recorder, start)
        return {"index": plan.index, "cpu_s": time.process_time() - cpu_start, **recorder.result()}
    finally:
        for channel in channels:
            await channel.close()


async def _drive(plan: WorkerPlan, channels: list, recorder: Recorder, start: float) -> None:
    config = plan.config
    metadata = auth_metadata(config.token)
    if config.stream:
        calls = [
            c.stream_stream(
                CLASSIFY_STREAM, request_serializer=None, response_deserializer=pb.ClassifyResponse.FromString
            )
            for c in channels
        ]
    else:
        calls = [c.unary_unary(CLASSIFY, request_serializer=None, response_deserializer=None) for c in channels]
    if plan.rate is not None:
        open_loop = loops.open_stream if config.stream else loops.open_unary
        await open_loop(calls, plan, recorder, start, metadata)
        return
    closed_loop = loops.closed_stream if config.stream else loops.closed_unary
    await asyncio.gather(
        *(closed_loop(calls[i % len(calls)], plan, recorder, i, metadata) for i in range(plan.concurrency))
    )


def main(plan: WorkerPlan, ready: Any, go: Any, start_at: Any, counters: Any, results: Any) -> None:
    """Entry point of a spawned worker: runs the plan, puts its result (or failure) on ``results``."""
    try:
        results.put(asyncio.run(run(plan, ready, go, start_at, counters)))
    except BaseException as exc:  # reported by the parent; a worker must never hang the run
        results.put({"index": plan.index, "failure": f"{type(exc).__name__}: {exc}"})
        ready.put(plan.index)
