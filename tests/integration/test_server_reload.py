"""Hot reload on a private server over a writable copy of the export: new versions are served
while clients keep calling, broken ones are rejected while the old one keeps serving."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest

from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.server_process import ServerProcess, metric, scrape_metrics

POLL = ["--poll-interval", "0.2"]


def publish(base: Path, version: int, source: Path | None = None) -> None:
    """The trainer's way: write into a dot-directory, then rename into place."""
    staging = base / f".tmp-{version}"
    shutil.copytree(source or base / "1", staging)
    staging.rename(base / str(version))


def request(version: int = 0) -> pb.ClassifyRequest:
    image = np.random.default_rng(version).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    return pb.ClassifyRequest(
        model=pb.ModelSpec(version=version), packed=pb.PackedImages(data=image.tobytes(), count=1, height=28, width=28)
    )


class CallingClients:
    """Threads calling Classify without pause; records the version of every answer and every error."""

    def __init__(self, target: str, threads: int = 4, max_calls: int = 20000):
        self.versions: list[list[int]] = [[] for _ in range(threads)]
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._channel = grpc.insecure_channel(target)
        stub = classifier_pb2_grpc.ClassifierStub(self._channel)

        def loop(seen: list[int]) -> None:
            for _ in range(max_calls):  # bounded even if the test forgets to stop us
                if self._stop.is_set():
                    return
                try:
                    seen.append(stub.Classify(request(), timeout=10).model_version)
                except grpc.RpcError as error:
                    self.errors.append(f"{error.code().name}: {error.details()}")

        self._threads = [threading.Thread(target=loop, args=(seen,), daemon=True) for seen in self.versions]
        for thread in self._threads:
            thread.start()

    def wait_for_version(self, version: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(seen and seen[-1] == version for seen in self.versions):
                return
            time.sleep(0.02)
        raise AssertionError(f"clients did not see version {version} within {timeout}s; errors: {self.errors[:3]}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        self._channel.close()


def test_new_versions_are_served_while_clients_keep_calling(model_base_path):
    with ServerProcess(["--model-dir", str(model_base_path), "--keep-versions", "2", *POLL]) as server:
        clients = CallingClients(server.target)
        try:
            clients.wait_for_version(1)
            publish(model_base_path, 2)
            clients.wait_for_version(2)
            with grpc.insecure_channel(server.target) as channel:
                stub = classifier_pb2_grpc.ClassifierStub(channel)
                info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
                assert (info.version, list(info.loaded_versions)) == (2, [1, 2])
                assert stub.Classify(request(version=1), timeout=10).model_version == 1  # still addressable
                publish(model_base_path, 3)
                clients.wait_for_version(3)
                deadline = time.monotonic() + 20
                while 1 in stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).loaded_versions:
                    assert time.monotonic() < deadline, "version 1 was never unloaded"
                    time.sleep(0.05)
                with pytest.raises(grpc.RpcError) as gone:
                    stub.Classify(request(version=1), timeout=10)
                assert gone.value.code() is grpc.StatusCode.NOT_FOUND
                assert "loaded versions: 2, 3" in gone.value.details()
        finally:
            clients.stop()
        assert clients.errors == []
        for seen in clients.versions:
            assert seen == sorted(seen) and set(seen) <= {1, 2, 3} and len(seen) > 3  # never back
        assert Counter(v for seen in clients.versions for v in seen)[2] > 0
        log = server.log_text()
        assert "model mnist: version 1 unloaded" in log
        assert metric(scrape_metrics(server.http_url), "mnist_serving_model_version", model="mnist") == 3


def test_broken_version_is_rejected_and_the_old_one_keeps_serving(model_base_path):
    with ServerProcess(["--model-dir", str(model_base_path), *POLL]) as server:
        shutil.copytree(model_base_path / "1", model_base_path / ".tmp-8")  # being written: ignored
        shutil.copytree(model_base_path / "1", model_base_path / "latest")  # not an integer: ignored
        broken = model_base_path / ".tmp-4"
        shutil.copytree(model_base_path / "1", broken)
        (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
        broken.rename(model_base_path / "4")
        clients = CallingClients(server.target, threads=2)
        try:
            deadline = time.monotonic() + 30
            while metric(scrape_metrics(server.http_url), "mnist_serving_model_loads_total", outcome="failure") < 1:
                assert time.monotonic() < deadline, "the broken version was never tried"
                time.sleep(0.05)
            clients.wait_for_version(1)
            publish(model_base_path, 5)  # a good version after a broken one is served
            clients.wait_for_version(5)
        finally:
            clients.stop()
        assert clients.errors == []
        samples = scrape_metrics(server.http_url)
        assert metric(samples, "mnist_serving_model_loads_total", outcome="failure") == 1  # not retried
        assert metric(samples, "mnist_serving_model_loads_total", outcome="success") == 2  # 1 and 5 only
        assert "model mnist: version 4 rejected, still serving [1]" in server.log_text()
