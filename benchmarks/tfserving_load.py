"""A closed-loop load generator for TF Serving's Predict with the pixels in `tensor_content`
(uint8 [batch, 28, 28], the compact form TF Serving's own clients send via tf.make_tensor_proto),
built like `mnist-client bench`: asyncio, one process, requests serialized once up front and sent
as bytes, answers not parsed. perf_analyzer covers the other TF Serving form (int_val).

Runs as a worker process (importing tensorflow-serving-api imports TensorFlow: seconds, paid once),
one JSON command per line on stdin, one JSON result per line on stdout:

    {"target": "127.0.0.1:8500", "concurrency": 64, "batch": 1, "seconds": 2.5, "warmup": 0.5}

Every run is bounded in time and in count, and sends to a loopback address only.
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2

from benchmarks.loadgen import check_loopback, run_closed_loop, serve_stdin
from mnist_client.bench import random_digits

_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
PREDICT = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Predict'].name}"
INPUT = "images"  # the serving signature's input (uint8 [-1, 28, 28])
DISTINCT_PAYLOADS = 16
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def predict_request(images: np.ndarray, model: str) -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    tensor = request.inputs[INPUT]
    tensor.dtype = types_pb2.DT_UINT8
    for size in images.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = np.ascontiguousarray(images, np.uint8).tobytes()
    return request.SerializeToString()


def payloads(batch: int, model: str) -> list[bytes]:
    images = random_digits()
    return [
        predict_request(images[(np.arange(batch) + k * batch) % len(images)], model) for k in range(DISTINCT_PAYLOADS)
    ]


async def closed_loop(
    target: str, concurrency: int, batch: int, seconds: float, warmup: float, model: str = "mnist"
) -> dict:
    """loadgen.run_closed_loop's callers sending TF Serving Predict requests over one channel."""
    check_loopback(target)
    requests = payloads(batch, model)
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
        call = channel.unary_unary(PREDICT, request_serializer=None, response_deserializer=None)

        async def send(k: int) -> str | None:
            try:
                await call(requests[k % len(requests)], timeout=REQUEST_TIMEOUT_S)
                return None
            except grpc.aio.AioRpcError as error:
                return error.code().name

        return await run_closed_loop(send, concurrency, batch, seconds, warmup)


async def run_command(command: dict) -> dict:
    return await closed_loop(
        command["target"],
        int(command["concurrency"]),
        int(command["batch"]),
        float(command["seconds"]),
        float(command["warmup"]),
    )


if __name__ == "__main__":
    serve_stdin(run_command)
