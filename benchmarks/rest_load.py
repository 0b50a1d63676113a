"""A closed-loop load generator for the HTTP port's JSON APIs, built like `mnist-client bench` and
tfserving_load.py: asyncio, one process, request bodies serialized once up front and sent as bytes,
answers read whole but only their status checked (200). aiohttp's client: one session whose
keep-alive pool holds one connection per concurrent caller, as a gRPC client holds one channel.

    tfserving-instances  POST /v1/models/{model}:predict  {"instances": [[[0, 255, ...], ...]]}
                         (TF Serving REST's row format: uint8 pixels 0-255 as nested lists)
    classify-json        POST /api/v1/classify            {"model": ..., "packed": {"data": "<base64>", ...}}
                         (our API's ClassifyRequest as JSON, the packed pixels that `mnist-client bench`
                         sends over gRPC)

KServe v2 REST is left to perf_analyzer -i http (benchmarks/triton_load.py), as KServe v2 gRPC is.

Runs as a worker process, like tfserving_load.py (loadgen.serve_stdin: one JSON command per line on
stdin, one JSON result per line on stdout), so its CPU is its own, as `mnist-client bench`'s
spawned worker's is:

    {"target": "127.0.0.1:8501", "api": "tfserving-instances", "concurrency": 64, "batch": 1,
     "seconds": 2.5, "warmup": 0.5}

Every run is bounded in time and in count, and sends to a loopback address only.
"""

from __future__ import annotations

import base64
import json

import aiohttp
import numpy as np

from benchmarks.loadgen import check_loopback, run_closed_loop, serve_stdin
from mnist_client.bench import random_digits

TFSERVING_INSTANCES = "tfserving-instances"
CLASSIFY_JSON = "classify-json"
PATHS = {TFSERVING_INSTANCES: "/v1/models/{model}:predict", CLASSIFY_JSON: "/api/v1/classify"}
DISTINCT_BODIES = 16
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0
HEADERS = {"Content-Type": "application/json"}


def instances_body(images: np.ndarray) -> bytes:
    """TF Serving REST's row format: one 28x28 nested list of integers per image."""
    return json.dumps({"instances": np.asarray(images, np.uint8).tolist()}, separators=(",", ":")).encode()


def classify_body(images: np.ndarray, model: str) -> bytes:
    """Our ClassifyRequest in protobuf's JSON mapping: the images packed in one base64 buffer."""
    images = np.ascontiguousarray(images, np.uint8)
    count, height, width = images.shape
    packed = {"data": base64.b64encode(images.tobytes()).decode(), "count": count, "height": height, "width": width}
    return json.dumps({"model": {"name": model}, "packed": packed}, separators=(",", ":")).encode()


def bodies(api: str, batch: int, model: str) -> list[bytes]:
    """DISTINCT_BODIES request bodies of `batch` images each, cycling through the same random digits
    the other load generators send."""
    if api not in PATHS:
        raise ValueError(f"unknown api {api!r}; known: {', '.join(PATHS)}")
    images = random_digits()
    chunks = [images[(np.arange(batch) + k * batch) % len(images)] for k in range(DISTINCT_BODIES)]
    if api == TFSERVING_INSTANCES:
        return [instances_body(chunk) for chunk in chunks]
    return [classify_body(chunk, model) for chunk in chunks]


def url(target: str, api: str, model: str) -> str:
    """The route's URL on `target` (HOST:PORT, loopback only)."""
    check_loopback(target)
    return f"http://{target}{PATHS[api].format(model=model)}"


async def closed_loop(
    target: str, api: str, concurrency: int, batch: int, seconds: float, warmup: float, model: str = "mnist"
) -> dict:
    """loadgen.run_closed_loop's callers sending `api`'s bodies over one keep-alive session."""
    address = url(target, api, model)
    requests = bodies(api, batch, model)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=HEADERS) as session:

        async def send(k: int) -> str | None:
            try:
                async with session.post(address, data=requests[k % len(requests)]) as response:
                    await response.read()  # the whole answer, as a client would take it; not parsed
                    return None if response.status == 200 else f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                return type(exc).__name__

        return await run_closed_loop(send, concurrency, batch, seconds, warmup)


async def run_command(command: dict) -> dict:
    return await closed_loop(
        command["target"],
        command["api"],
        int(command["concurrency"]),
        int(command["batch"]),
        float(command["seconds"]),
        float(command["warmup"]),
    )


if __name__ == "__main__":
    serve_stdin(run_command)
