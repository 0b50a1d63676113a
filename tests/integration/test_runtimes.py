"""The runtimes on the real server: LiteRT (the version's model.tflite), TensorFlow (its SavedModel)
and auto (LiteRT for small batches, TensorFlow for large ones) answer alike, say which one serves each
version, and handle versions without model.tflite as documented."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest

from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.server_process import metric, scrape_metrics
from tests.support.synthetic import synthetic_arrays
from tests.support.waiting import wait_until

RUNTIME_INFO = "mnist_serving_model_runtime_info"


@pytest.fixture(scope="module")
def reference(exported_model):
    """The SavedModel's own answers (TensorFlow, in this process) for 100 synthetic images."""
    from mnist_server.model import DeviceChoice
    from mnist_server.runtimes import load_model

    images, _ = synthetic_arrays(100, seed=21)
    model = load_model("mnist", 1, exported_model / "1", DeviceChoice("cpu", "/CPU:0"))
    return images, model.predict(images)


def classify(target: str, images: np.ndarray) -> pb.ClassifyResponse:
    with grpc.insecure_channel(target) as channel:
        return classifier_pb2_grpc.ClassifierStub(channel).Classify(
            pb.ClassifyRequest(packed=pb.PackedImages(data=images.tobytes(), count=len(images), height=28, width=28)),
            timeout=30,
        )


def assert_same_answers(response: pb.ClassifyResponse, expected: dict) -> None:
    assert [p.label for p in response.predictions] == expected["classes"].tolist()
    np.testing.assert_allclose([p.probabilities for p in response.predictions], expected["probabilities"], atol=1e-5)


def runtimes_served(server) -> dict[str, float]:
    samples = scrape_metrics(server.http_url)
    return {dict(labels)["runtime"]: value for (name, labels), value in samples.items() if name == RUNTIME_INFO}


@pytest.mark.parametrize(
    "runtime, shown", [("litert", "litert"), ("tensorflow", "tensorflow"), ("auto", "litert+tensorflow")]
)
def test_every_runtime_answers_as_the_saved_model_at_small_and_large_batches(
    start_server, exported_model, reference, runtime, shown
):
    images, expected = reference
    # auto's switch at 8 images: the single image goes to LiteRT, the batch of 100 to TensorFlow
    with start_server(
        ["--model-dir", str(exported_model), "--runtime", runtime, "--litert-max-batch-size", "8"]
    ) as server:
        assert runtimes_served(server) == {shown: 1.0}
        assert_same_answers(classify(server.target, images[:1]), {k: v[:1] for k, v in expected.items()})
        assert_same_answers(classify(server.target, images), expected)
        assert f"runtime {shown}" in server.log_text()


def test_auto_measures_where_tensorflow_overtakes_litert_when_a_version_loads(start_server, exported_model, reference):
    images, expected = reference
    # --runtime auto given: `make runtimes` forces another runtime through MNIST_SERVER_RUNTIME
    with start_server(["--model-dir", str(exported_model), "--runtime", "auto", "--max-batch-size", "64"]) as server:
        found = re.search(
            r"computes batches up to (\d+) images with LiteRT.*LiteRT vs TensorFlow: (.*)\)", server.log_text()
        )
        assert found, server.log_tail()
        timed = [int(entry.split(":")[0]) for entry in found[2].split(", ")]
        assert timed[0] == 16 and all(size <= 64 for size in timed)  # never beyond --max-batch-size
        assert 8 <= int(found[1]) <= 64
        assert_same_answers(classify(server.target, images), expected)


def copy_without_tflite(source: Path, target: Path) -> None:
    staging = target.parent / f".tmp-{target.name}"
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("model.tflite"))
    staging.rename(target)


def test_litert_rejects_a_version_without_model_tflite_and_keeps_serving_the_older_one(start_server, model_base_path):
    assert (model_base_path / "1" / "model.tflite").is_file()  # the trainer exports it
    with start_server(["--model-dir", str(model_base_path), "--runtime", "litert", "--poll-interval", "0.2"]) as server:
        copy_without_tflite(model_base_path / "1", model_base_path / "2")
        wait_until(
            lambda: metric(scrape_metrics(server.http_url), "mnist_serving_model_loads_total", outcome="failure") == 1,
            "the version without model.tflite's rejection",
            30,
            0.1,
            server.log_tail,
        )
        assert f"{model_base_path / '2'} has no model.tflite" in server.log_text()
        images, _ = synthetic_arrays(3, seed=3)
        assert classify(server.target, images).model_version == 1
        assert runtimes_served(server) == {"litert": 1.0}


def test_auto_serves_a_version_without_model_tflite_with_tensorflow_and_says_so(start_server, model_base_path):
    copy_without_tflite(model_base_path / "1", model_base_path / "2")
    with start_server(["--model-dir", str(model_base_path), "--runtime", "auto"]) as server:
        images, _ = synthetic_arrays(3, seed=4)
        assert classify(server.target, images).model_version == 2
        assert runtimes_served(server) == {"tensorflow": 1.0}
        assert "has no model.tflite: --runtime auto serves it with TensorFlow" in server.log_text()


def test_litert_serves_only_a_model_tflite_proven_at_export(start_server, model_base_path):
    """The file's SHA-256 must be the one the trainer recorded with its check."""
    altered = model_base_path / "2"
    copy_without_tflite(model_base_path / "1", altered)
    data = bytearray((model_base_path / "1" / "model.tflite").read_bytes())
    data[-1] ^= 1  # one bit: a different file from the one proven
    (altered / "model.tflite").write_bytes(bytes(data))
    with start_server(["--model-dir", str(model_base_path), "--runtime", "litert"]) as server:
        assert classify(server.target, synthetic_arrays(1, seed=5)[0]).model_version == 1
        assert (
            f"{altered / 'model.tflite'} is not proven equal to the SavedModel: its SHA-256 differs"
            in server.log_text()
        )


def test_auto_checks_litert_against_the_saved_model_and_keeps_tensorflow_when_they_disagree(
    start_server, model_base_path
):
    import tensorflow as tf

    # the converter's known trap on this export: a model without its weights, answering NaN
    broken = tf.lite.TFLiteConverter.from_saved_model(str(model_base_path / "1")).convert()
    (model_base_path / "1" / "model.tflite").write_bytes(broken)
    with start_server(["--model-dir", str(model_base_path), "--runtime", "auto"]) as server:
        assert runtimes_served(server) == {"tensorflow": 1.0}
        assert "model.tflite disagrees with the SavedModel on 64 check images" in server.log_text()
