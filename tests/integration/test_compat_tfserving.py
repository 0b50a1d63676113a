"""TensorFlow Serving's API on our port, called with the official `tensorflow_serving.apis` stubs,
against the real server: the real model's answers through this API and the export's own SignatureDef.
Status codes, messages, input forms, Classify, GetModelStatus and version labels run in-process
against a fake model: tests/unit/test_inprocess_compat_tfserving.py.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, predict_pb2, prediction_service_pb2_grpc

from mnist_client import MnistClient
from tests.support.fake_model import signature_def as fake_signature_def
from tests.support.synthetic import synthetic_arrays

IMAGES, LABELS = synthetic_arrays(12, seed=21)


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.target) as chan:
        yield chan


@pytest.fixture(scope="module")
def prediction(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def ours(server):
    """What our own API answers for IMAGES: (labels, probabilities)."""
    with MnistClient(server.target) as client:
        predictions = client.classify(IMAGES)
    return np.array([p.label for p in predictions]), np.array([p.probabilities for p in predictions])


def predict_request(tensor, model="mnist", **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model, **spec))
    request.inputs["images"].CopyFrom(tensor)
    return request


def test_predict_on_the_real_model_gives_our_apis_answers(prediction, ours):
    response = prediction.Predict(predict_request(tf.make_tensor_proto(IMAGES)), timeout=10)
    labels, probabilities = ours
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["classes"]), labels)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), probabilities, atol=1e-6)
    assert set(response.outputs) == {"classes", "probabilities", "logits"}
    assert np.mean(labels == LABELS) > 0.8  # a trained model, not a constant answer


def test_get_model_metadata_is_the_exports_serving_signature(prediction, exported_model):
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_pb2.ModelSpec(name="mnist"), metadata_field=["signature_def"]
    )
    response = prediction.GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    saved = saved_model_pb2.SavedModel.FromString((exported_model / "1" / "saved_model.pb").read_bytes())
    assert signatures.signature_def["serving_default"] == saved.meta_graphs[0].signature_def["serving_default"]
    images = signatures.signature_def["serving_default"].inputs["images"]
    assert images.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in images.tensor_shape.dim] == [-1, 28, 28]
    assert (response.model_spec.name, response.model_spec.version.value) == ("mnist", 1)
    # the in-process tests' fake model returns the same SignatureDef
    assert signatures.signature_def["serving_default"] == meta_graph_pb2.SignatureDef.FromString(fake_signature_def())
