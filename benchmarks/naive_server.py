"""The naive baseline: the server a user would write in an afternoon from the gRPC tutorial.

A synchronous `grpc.server` with a thread pool, one SavedModel call per request, no batching.
It is meant to be a fair opponent, not a straw man: the model is loaded once, the request is
decoded with numpy (no per-pixel Python), and TensorFlow runs with its default thread pools.
It implements our `Classifier.Classify` so the same load tester drives it and our server.

    python -m benchmarks.naive_server --model-dir BASE [--port P] [--workers 10]
"""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from benchmarks.models import latest_version
from mnist_serving.v1 import classifier_pb2, classifier_pb2_grpc

SIDE = 28
# The thread count the gRPC Python examples use; a user copying the tutorial keeps it.
DEFAULT_WORKERS = 10


class NaiveClassifier(classifier_pb2_grpc.ClassifierServicer):
    def __init__(self, model_dir: Path):
        self.version_dir = latest_version(model_dir)
        self.model_name = model_dir.name
        self.model = tf.saved_model.load(str(self.version_dir))
        self.predict = self.model.signatures["serving_default"]
        labels = self.version_dir / "assets" / "labels.txt"
        self.class_names = labels.read_text().split() if labels.is_file() else [str(i) for i in range(10)]

    def Classify(self, request, context):
        if request.packed.count:
            packed = request.packed
            images = np.frombuffer(packed.data, np.uint8).reshape(packed.count, SIDE, SIDE)
        else:
            images = np.stack([np.frombuffer(image.pixels, np.uint8).reshape(SIDE, SIDE) for image in request.images])
        outputs = self.predict(images=tf.constant(images))
        probabilities = outputs["probabilities"].numpy()
        classes = outputs["classes"].numpy()
        return classifier_pb2.ClassifyResponse(
            model_name=self.model_name,
            model_version=int(self.version_dir.name),
            request_id=request.request_id,
            predictions=[
                classifier_pb2.Prediction(label=int(label), class_name=self.class_names[label], probabilities=probs)
                for label, probs in zip(classes, probabilities)
            ],
        )

    def GetModelInfo(self, request, context):
        return classifier_pb2.GetModelInfoResponse(
            name=self.model_name,
            version=int(self.version_dir.name),
            loaded_versions=[int(self.version_dir.name)],
            input_shape=[-1, SIDE, SIDE],
            input_dtype="uint8",
            class_names=self.class_names,
            device="cpu",
        )


def serve(model_dir: Path, host: str, port: int, workers: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    classifier_pb2_grpc.add_ClassifierServicer_to_server(NaiveClassifier(model_dir), server)
    # The standard health service (as in gRPC's examples): clients that health-check get an answer.
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", "mnist_serving.v1.Classifier"):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"listening on {host}:{bound}", flush=True)  # the line the harness waits for
    stop.wait()
    server.stop(grace=1).wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    args = parser.parse_args()
    serve(args.model_dir, args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
