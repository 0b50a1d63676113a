"""The in-process harness and its fake model (tests/support/inprocess.py, fake_model.py): the server
takes a loader, a fake-model server sets up no TensorFlow and loads no real runtime, starts fast,
and the fake's rule is what the catalogues rely on."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.fake_model import CLASS_NAMES, SIGNATURE, fake_classes, fake_outputs, write_fake_versions
from tests.support.inprocess import InProcessServer
from tests.support.synthetic import synthetic_arrays


def refuse(*args, **kwargs):
    raise AssertionError("a fake-model server must not touch TensorFlow or the real runtimes")


def test_a_fake_model_server_sets_up_no_tensorflow_and_loads_no_runtime(monkeypatch):
    import mnist_server.app

    monkeypatch.setattr(mnist_server.app, "configure_tensorflow", refuse)
    monkeypatch.setattr(mnist_server.app, "load_model", refuse)
    monkeypatch.setattr(mnist_server.app, "_freeze_startup_objects", refuse)  # gc.freeze is for a process of its own
    images, _ = synthetic_arrays(5, seed=3)
    with InProcessServer() as server, grpc.insecure_channel(server.target) as channel:
        response = classifier_pb2_grpc.ClassifierStub(channel).Classify(
            pb.ClassifyRequest(packed=pb.PackedImages(data=images.tobytes(), count=5, height=28, width=28)), timeout=10
        )
        assert [p.label for p in response.predictions] == fake_classes(images).tolist()
        assert server.server.repository.device.kind == "cpu"


def test_it_starts_and_stops_in_well_under_a_second():
    started = time.perf_counter()
    with InProcessServer() as server:
        ready = time.perf_counter() - started
        assert server.server.core.ready
    stopped = time.perf_counter() - started - ready
    assert ready < 1.0 and stopped < 1.0, (ready, stopped)


def test_a_server_that_loads_nothing_fails_to_start_and_leaves_nothing_running(tmp_path):
    def broken(name, version, path, device):
        raise RuntimeError("no such luck")

    with pytest.raises(TimeoutError, match="not ready within 0.5s"):
        with InProcessServer(base_path=write_fake_versions(tmp_path / "mnist"), loader=broken, ready_timeout=0.5):
            pass
    ours = ("inprocess-server", "model-worker", "model-loader")
    assert not [t.name for t in threading.enumerate() if t.name.startswith(ours)]


def test_the_fake_answers_follow_its_rule():
    images, _ = synthetic_arrays(200, seed=5)
    outputs = fake_outputs(images)
    assert {name: (array.dtype.name, array.shape[1:]) for name, array in outputs.items()} == {
        t.name: (t.dtype, t.shape[1:]) for t in SIGNATURE.outputs
    }
    assert (outputs["classes"] == outputs["probabilities"].argmax(axis=1)).all()
    np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, rtol=1e-6)
    assert set(outputs["classes"].tolist()) == set(range(len(CLASS_NAMES)))  # every class turns up
    # a protocol that transposes or rescales an image gets another answer (almost always)
    assert np.mean(fake_classes(images.transpose(0, 2, 1)) != outputs["classes"]) > 0.7
    assert (
        np.mean(fake_classes(np.minimum(images.astype(np.int64) + 1, 255).astype(np.uint8)) != outputs["classes"]) > 0.7
    )
