"""KServe v2 / Triton's gRPC API on our port, called with tritonclient's InferenceServerClient,
against the real server: the real model's answers through this API, and the runtime it reports.
Status codes, messages, metadata, input forms, streams, statistics and the classification extension
run in-process against a fake model: tests/unit/test_inprocess_compat_kserve.py."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton

from mnist_client import MnistClient
from tests.support.server_process import served_runtime
from tests.support.synthetic import synthetic_arrays

IMAGES, LABELS = synthetic_arrays(10, seed=31)


@pytest.fixture(scope="module")
def client(server):
    with triton.InferenceServerClient(server.target) as triton_client:
        yield triton_client


@pytest.fixture(scope="module")
def ours(server):
    with MnistClient(server.target) as mnist:
        predictions = mnist.classify(IMAGES)
    return np.array([p.label for p in predictions]), np.array([p.probabilities for p in predictions])


def infer_input(array: np.ndarray, datatype: str, name: str = "images") -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def test_infer_on_the_real_model_gives_our_apis_answers(client, ours):
    result = client.infer("mnist", [infer_input(IMAGES, "UINT8")])
    labels, probabilities = ours
    np.testing.assert_array_equal(result.as_numpy("classes"), labels)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=1e-6)
    assert np.mean(labels == LABELS) > 0.8  # a trained model, not a constant answer
    assert client.get_model_config("mnist", as_json=True)["config"]["backend"] == served_runtime()
