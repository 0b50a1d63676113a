"""A do-nothing server for our API: parses each request, answers canned predictions.

It is the "RPC ceiling" (what gRPC in Python costs with no model behind it) and the trivial
server used to measure the load tester's own overhead. Same service, same message shapes,
plus the health service, so `mnist-client classify|info|health|bench` all work against it.

    python -m benchmarks.null_server --port 8600     # prints "listening on 127.0.0.1:8600"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mnist_server.__main__ import run_event_loop
from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc as pb_grpc

SERVICE = "mnist_serving.v1.Classifier"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CLASS_NAMES = [str(digit) for digit in range(10)]
MODEL_VERSION = 1
READY_LINE = re.compile(r"listening on (\S+):(\d+)")


class NullClassifier(pb_grpc.ClassifierServicer):
    """Answers every image with label 0 at probability 1, from a per-size cache."""

    def __init__(self, model_name: str) -> None:
        self._model_name = model_name
        self._canned: dict[int, pb.ClassifyResponse] = {}

    def _answer(self, request: pb.ClassifyRequest) -> pb.ClassifyResponse:
        count = request.packed.count if request.HasField("packed") else len(request.images)
        response = self._canned.get(count)
        if response is None:
            prediction = pb.Prediction(label=0, class_name="0", probabilities=[1.0] + [0.0] * 9)
            response = pb.ClassifyResponse(
                model_name=self._model_name, model_version=MODEL_VERSION, predictions=[prediction] * count
            )
            self._canned[count] = response
        if request.request_id:
            response = pb.ClassifyResponse(
                model_name=response.model_name,
                model_version=MODEL_VERSION,
                predictions=response.predictions,
                request_id=request.request_id,
            )
        return response

    async def Classify(self, request, context):
        return self._answer(request)

    async def ClassifyStream(self, request_iterator, context):
        async for request in request_iterator:
            yield self._answer(request)

    async def GetModelInfo(self, request, context):
        return pb.GetModelInfoResponse(
            name=self._model_name,
            version=MODEL_VERSION,
            loaded_versions=[MODEL_VERSION],
            input_shape=[-1, 28, 28],
            input_dtype="uint8",
            class_names=CLASS_NAMES,
            metadata_json=json.dumps({"null_server": True}),
            device="cpu",
            max_batch_size=128,
        )


async def serve(host: str, port: int, model_name: str = "mnist") -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    pb_grpc.add_ClassifierServicer_to_server(NullClassifier(model_name), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    for service in ("", SERVICE):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    print(f"listening on {host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(grace=1.0)


class NullServerProcess:
    """The null server in a child process: ``with NullServerProcess() as ns: ns.target``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0) -> None:
        self._args = [sys.executable, "-m", "benchmarks.null_server", "--host", host, "--port", str(port)]
        self._startup_timeout = startup_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.target = ""

    def __enter__(self) -> NullServerProcess:
        repo_root = Path(__file__).resolve().parents[1]
        self.proc = subprocess.Popen(self._args, cwd=repo_root, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        match = READY_LINE.search(line)
        if not match:
            self.terminate()
            raise RuntimeError(f"null server did not start (printed {line!r})")
        self.target = f"{match.group(1)}:{match.group(2)}"
        return self

    def terminate(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--model-name", default="mnist")
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the same loop choice as mnist-server's, so the ceiling stays a ceiling",
    )
    args = parser.parse_args(argv)
    run_event_loop(serve(args.host, args.port, args.model_name), args.event_loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
