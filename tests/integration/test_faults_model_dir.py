"""Faults in the model directory and in the model itself, on a real server with callers running.

One server lives through every model-directory fault in turn (corrupt version, version that fails
warm-up, version deleted while serving, directory emptied, directory gone) and recovers when a
good version appears; its callers must see no error and only right answers throughout. A second
server serves a model that raises on marked images: only the request carrying one fails.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from mnist_client import ClientError, MnistClient
from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.broken_models import export_refusing_model, mark, truncate_variables
from tests.support.server_process import ServerProcess, metric, scrape_metrics
from tests.support.synthetic import synthetic_arrays
from tests.support.waiting import wait_until

POLL = ["--poll-interval", "0.2"]
WAIT_S = 60  # for one version to load or be rejected on a busy machine


@pytest.fixture(scope="module")
def refusing_models(tmp_path_factory, exported_model):
    """Two genuine SavedModels wrapping the trained one: 'marked' raises on marked images,
    'blank' raises on an all-zero batch (so it fails warm-up)."""
    root = tmp_path_factory.mktemp("refusing")
    return {
        refuse: export_refusing_model(exported_model / "1", root / refuse, refuse) for refuse in ("marked", "blank")
    }


def publish(base: Path, version: int, source: Path, damage=None) -> None:
    """As the trainer does: write a dot-directory, then rename it into place."""
    staging = base / f".tmp-{version}"
    shutil.copytree(source, staging)
    if damage is not None:
        damage(staging)
    staging.rename(base / str(version))


class Callers:
    """Threads classifying the same images over and over with the real client (default retries)."""

    def __init__(self, target: str, images: np.ndarray, expected: list[int], threads: int = 2):
        self.target, self.images, self.expected = target, images, expected
        self.versions: Counter = Counter()
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        with MnistClient(self.target, timeout=30) as client:
            for _ in range(1_000_000):  # bounded; stopped long before
                if self.stop_event.is_set():
                    return
                try:
                    predictions = client.classify(self.images)
                except ClientError as error:
                    self.errors.append(f"{error.code.name}: {error.details}")
                    continue
                if [p.label for p in predictions] != self.expected:
                    self.errors.append(f"wrong answer from version {predictions[0].model_version}")
                self.versions[predictions[0].model_version] += 1

    def wait_for_version(self, version: int, server: ServerProcess) -> None:
        seen = self.versions[version]
        wait_until(
            lambda: self.versions[version] > seen + 5,
            f"calls answered by version {version}",
            WAIT_S,
            0.05,
            server.log_tail,
        )

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(30)


# These faults are SavedModel breakages (truncated variables, a graph that raises), so the server runs
# the SavedModel at every batch size; model.tflite's own faults (missing, altered, disagreeing) are in
# test_runtimes.py.
SAVED_MODEL_RUNTIME = ("--runtime", "tensorflow")


def loads(server: ServerProcess, outcome: str) -> float:
    return metric(scrape_metrics(server.http_url), "mnist_serving_model_loads_total", outcome=outcome)


def gauge(server: ServerProcess, name: str) -> float:
    return metric(scrape_metrics(server.http_url), f"mnist_serving_{name}", model="mnist")


def test_model_directory_faults_never_interrupt_serving(model_base_path, refusing_models):
    base = model_base_path
    images, _ = synthetic_arrays(8, seed=61)
    good = base / "1"
    pristine = base.parent / "pristine-1"
    shutil.copytree(good, pristine)  # the good export, kept out of the server's sight
    with (
        ServerProcess(["--model-dir", str(base), *POLL, *SAVED_MODEL_RUNTIME]) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        with MnistClient(server.target) as client:
            expected = [p.label for p in client.classify(images)]
        callers = Callers(server.target, images, expected)
        health = health_pb2_grpc.HealthStub(channel)
        status = model_service_pb2_grpc.ModelServiceStub(channel)
        try:
            callers.wait_for_version(1, server)
            # 1. A corrupt version (variables cut in half): rejected, version 1 keeps serving.
            publish(base, 2, pristine, damage=truncate_variables)
            wait_until(
                lambda: loads(server, "failure") == 1, "the corrupt version's rejection", WAIT_S, 0.05, server.log_tail
            )
            assert "model mnist: version 2 rejected, still serving [1]: cannot load SavedModel" in server.log_text()
            [v2] = status.GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(
                    model_spec=model_pb2.ModelSpec(name="mnist", version={"value": 2})
                ),
                timeout=10,
            ).model_version_status
            assert v2.state == get_model_status_pb2.ModelVersionStatus.END and v2.status.error_message
            # 2. A version that loads but fails warm-up: rejected the same way.
            publish(base, 3, refusing_models["blank"])
            wait_until(lambda: loads(server, "failure") == 2, "the warm-up failure", WAIT_S, 0.05, server.log_tail)
            assert "version 3 rejected, still serving [1]" in server.log_text()
            assert "warm-up at batch 1 failed" in server.log_text()
            callers.wait_for_version(1, server)
            # 3. A good version is served; then deleted while serving: back to the newest good one on disk.
            publish(base, 4, pristine)
            callers.wait_for_version(4, server)
            shutil.rmtree(base / "4")
            callers.wait_for_version(1, server)
            assert "model mnist: version 4 unloaded" in server.log_text()
            # 4. The directory emptied: keep serving from memory, say so in the log and a metric.
            for version in ("1", "2", "3"):
                shutil.rmtree(base / version)
            wait_until(
                lambda: gauge(server, "model_versions_on_disk") == 0,
                "versions_on_disk 0",
                WAIT_S,
                0.05,
                server.log_tail,
            )
            callers.wait_for_version(1, server)
            assert f"no version directory with a SavedModel in {base}; keeping versions [1]" in server.log_text()
            metadata = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
                get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec=model_pb2.ModelSpec(name="mnist"), metadata_field=["signature_def"]
                ),
                timeout=10,
            )
            assert metadata.model_spec.version.value == 1  # served from memory, files or not
            # 5. The directory gone (an unmounted volume): the same.
            base.rename(base.parent / "unmounted")
            wait_until(
                lambda: f"cannot list {base}" in server.log_text(), "the scan error", WAIT_S, 0.05, server.log_tail
            )
            callers.wait_for_version(1, server)
            assert (
                health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
                == health_pb2.HealthCheckResponse.SERVING
            )  # it serves: probes must not restart it
            # 6. Recovery: the volume is back with a good new version.
            base.mkdir()
            publish(base, 5, pristine)
            callers.wait_for_version(5, server)
            assert gauge(server, "model_versions_on_disk") == 1 and gauge(server, "model_version") == 5
        finally:
            callers.stop()
    assert callers.errors == [], callers.errors[:5]
    assert set(callers.versions) == {1, 4, 5}  # never the broken 2 and 3
    print(f"\ncalls per version through six directory faults: {dict(callers.versions)}; errors: 0")


def test_only_the_request_that_makes_the_model_raise_fails(tmp_path, refusing_models):
    base = tmp_path / "mnist"
    base.mkdir()
    shutil.copytree(refusing_models["marked"], base / "1")
    images, _ = synthetic_arrays(40, seed=62)
    images[:, [0, 0, -1, -1], [0, -1, 0, -1]] = 0  # no accidental marks
    flags = ["--model-dir", str(base), "--max-batch-size", "64", "--batch-timeout-ms", "300", *SAVED_MODEL_RUNTIME]
    with ServerProcess(flags) as server, grpc.insecure_channel(server.target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)

        def request(batch: np.ndarray) -> pb.ClassifyRequest:
            return pb.ClassifyRequest(
                packed=pb.PackedImages(data=batch.tobytes(), count=len(batch), height=28, width=28)
            )

        expected = [p.label for p in stub.Classify(request(images), timeout=30).predictions]
        before = scrape_metrics(server.http_url)
        # Nine requests arrive within the 300 ms the first one waits for company: one batch of 37 images.
        batches = [images[4 * i : 4 * i + 4] for i in range(8)] + [mark(images[32:33])]
        futures = [stub.Classify.future(request(batch), timeout=30) for batch in batches]
        outcomes = []
        for future in futures:
            try:
                outcomes.append([p.label for p in future.result().predictions])
            except grpc.RpcError as error:
                outcomes.append((error.code(), error.details()))
        # The next batch is served as if nothing happened.
        after_labels = [p.label for p in stub.Classify(request(images[:8]), timeout=30).predictions]
        after = scrape_metrics(server.http_url)
        log = server.log_text()
    assert outcomes[:8] == [expected[4 * i : 4 * i + 4] for i in range(8)]
    assert outcomes[8] == (grpc.StatusCode.INTERNAL, "the model failed while computing this request's batch")
    assert after_labels == expected[:8]
    assert "model failed on a batch of 9 requests; retrying them one by one" in log  # they did share a batch
    assert "refusing model: this batch has a marked image" in log  # the real cause, for the operator
    counted = metric(after, "mnist_serving_requests_total", code="INTERNAL") - metric(
        before, "mnist_serving_requests_total", code="INTERNAL"
    )
    assert counted == 1
