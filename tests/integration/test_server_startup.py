"""Start-up and multi-model behaviour of the real process: no model yet (UNAVAILABLE, not ready,
then ready when a version appears), --device gpu without a GPU, several models, and a model
that raises on one input (INTERNAL for that request only)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.server_process import ServerProcess, http_get


def packed(images: np.ndarray, model: str = "") -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        model=pb.ModelSpec(name=model),
        packed=pb.PackedImages(data=images.tobytes(), count=len(images), height=28, width=28),
    )


def wait_http(server: ServerProcess, path: str, status: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http_get(server.http_url + path, timeout=1)[0] == status:
                return
        except OSError:
            pass
        assert server.proc.poll() is None, server.log_tail()
        time.sleep(0.05)
    raise AssertionError(f"{path} never answered {status}:\n{server.log_tail()}")


def test_no_version_yet_is_unavailable_until_one_appears(tmp_path, exported_model):
    base = tmp_path / "mnist"
    base.mkdir()
    with ServerProcess(["--model-dir", str(base), "--poll-interval", "0.2"], wait_ready=False) as server:
        wait_http(server, "/healthz", 200)
        assert http_get(server.http_url + "/readyz")[0] == 503
        with grpc.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.Classify(packed(np.zeros((1, 28, 28), np.uint8)), timeout=10)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            assert info.value.details() == (
                f"model 'mnist' is unavailable: no version loaded yet "
                f"(no version directory with a SavedModel in {base})"
            )

            shutil.copytree(exported_model / "1", base / ".tmp-1")
            (base / ".tmp-1").rename(base / "1")
            wait_http(server, "/readyz", 200)
            check = health.Check(health_pb2.HealthCheckRequest(service="mnist_serving.v1.Classifier"), timeout=10)
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            assert stub.Classify(packed(np.zeros((1, 28, 28), np.uint8)), timeout=10).model_version == 1
    # TensorFlow's pool threads must not spin between requests (model.configure_tensorflow)
    assert "spinning off" in server.log_text()
    assert "event loop: uvloop" in server.log_text()  # the default --event-loop


def test_gpu_requested_without_one_fails_at_start_with_a_clear_message(exported_model):
    server = ServerProcess(["--model-dir", str(exported_model), "--device", "gpu"], wait_ready=False)
    with server:
        assert server.proc.wait(120) == 1
    assert "--device gpu was requested but TensorFlow sees no GPU" in server.log_text()


def test_bad_flags_exit_2_naming_the_flag(tmp_path):
    server = ServerProcess(["--model-dir", str(tmp_path / "missing")], wait_ready=False)
    with server:
        assert server.proc.wait(60) == 2
    assert "is not a directory" in server.log_text()


def write_faulty_model(base: Path) -> Path:
    """A SavedModel with the served signature that raises when an image's top-left pixel is 255."""
    import tensorflow as tf

    class Faulty(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name="images")])
        def serve(self, images):
            tf.debugging.assert_less(tf.reduce_max(images[:, 0, 0]), tf.constant(255, tf.uint8), message="poison pixel")
            logits = tf.cast(tf.reshape(images, [-1, 784])[:, 100:110], tf.float32)
            return {"probabilities": tf.nn.softmax(logits), "classes": tf.argmax(logits, axis=1), "logits": logits}

    module = Faulty()
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.serve})
    return base


def test_several_models_and_a_model_error_fails_only_its_request(tmp_path, exported_model):
    faulty = write_faulty_model(tmp_path / "faulty")
    # the faulty export is a SavedModel whose graph raises: run the SavedModel at every batch size
    flags = [
        "--model",
        f"mnist={exported_model}",
        "--model",
        f"faulty={faulty}",
        "--batch-timeout-ms",
        "20",
        "--runtime",
        "tensorflow",
    ]
    with ServerProcess(flags) as server, grpc.insecure_channel(server.target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        assert stub.Classify(packed(np.zeros((1, 28, 28), np.uint8)), timeout=10).model_name == "mnist"
        info = stub.GetModelInfo(pb.GetModelInfoRequest(model=pb.ModelSpec(name="faulty")), timeout=10)
        assert list(info.class_names) == [str(i) for i in range(10)]  # no labels.txt: indices

        good = np.random.default_rng(1).integers(0, 200, (20, 1, 28, 28), dtype=np.uint8)
        poison = np.zeros((1, 28, 28), np.uint8)
        poison[0, 0, 0] = 255

        async def together():
            async with grpc.aio.insecure_channel(server.target) as aio_channel:
                aio_stub = classifier_pb2_grpc.ClassifierStub(aio_channel)
                calls = [aio_stub.Classify(packed(g, "faulty"), timeout=20) for g in good[:10]]
                calls.append(aio_stub.Classify(packed(poison, "faulty"), timeout=20))
                calls += [aio_stub.Classify(packed(g, "faulty"), timeout=20) for g in good[10:]]
                return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(asyncio.wait_for(together(), 60))
        failed = results.pop(10)
        assert isinstance(failed, grpc.aio.AioRpcError)
        assert failed.code() is grpc.StatusCode.INTERNAL
        assert "poison" not in failed.details() and "model failed" in failed.details()
        for image, result in zip(good, results):
            assert result.model_name == "faulty"
            assert result.predictions[0].label == int(np.argmax(image.reshape(784)[100:110]))
        assert "poison pixel" in server.log_text()  # the traceback is in the log
