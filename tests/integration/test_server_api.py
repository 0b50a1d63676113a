"""Our API through real gRPC against the real server (the shared session `server`, state unchanged),
for what needs a real export: answers equal to the export called directly, the export's own files,
the runtime a real server picks, a script calling it by reflection. Status codes, messages and the
rest of the protocol mapping run in-process against a fake model: tests/unit/test_inprocess_server_api.py.
"""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.fake_model import SIGNATURE as FAKE_SIGNATURE
from tests.support.server_process import served_runtime
from tests.support.synthetic import synthetic_arrays

SERVICE = "mnist_serving.v1.Classifier"


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.target) as chan:
        yield chan


@pytest.fixture(scope="module")
def stub(channel):
    return classifier_pb2_grpc.ClassifierStub(channel)


def packed(images: np.ndarray, **fields) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        packed=pb.PackedImages(data=images.tobytes(), count=len(images), height=28, width=28), **fields
    )


def test_answers_match_the_exported_model_called_directly(stub, exported_model):
    from mnist_server.model import DeviceChoice
    from mnist_server.runtimes import load_model  # imports TensorFlow here only

    images, labels = synthetic_arrays(16, seed=11)
    response = stub.Classify(packed(images, request_id="r-1"), timeout=10)
    direct = load_model("mnist", 1, exported_model / "1", DeviceChoice("cpu", "/CPU:0"))
    expected = direct.predict(images)
    assert (response.model_name, response.model_version, response.request_id) == ("mnist", 1, "r-1")
    assert [p.label for p in response.predictions] == expected["classes"].tolist()
    got = np.array([p.probabilities for p in response.predictions])
    np.testing.assert_allclose(got, expected["probabilities"], atol=1e-5)
    assert [p.class_name for p in response.predictions] == [direct.class_names[c] for c in expected["classes"]]
    assert np.mean(expected["classes"] == labels) > 0.8  # the trainer really trained it
    assert direct.signature == FAKE_SIGNATURE  # the in-process tests' fake model has the real signature


def test_model_info_describes_the_served_export(stub, exported_model):
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert (info.name, info.version, list(info.loaded_versions)) == ("mnist", 1, [1])
    assert (list(info.input_shape), info.input_dtype) == ([-1, 28, 28], "uint8")
    labels = (exported_model / "1" / "assets" / "labels.txt").read_text().split()
    assert list(info.class_names) == labels
    assert json.loads(info.metadata_json) == json.loads(
        (exported_model / "1" / "assets.extra" / "metadata.json").read_text()
    )
    assert info.device == "cpu" and info.max_batch_size == 256  # --max-batch-size default
    assert info.runtime == served_runtime()
    same = stub.GetModelInfo(pb.GetModelInfoRequest(model=pb.ModelSpec(name="mnist", version=1)), timeout=10)
    assert same.version == 1


def test_reflection_is_enough_to_call_the_api_without_proto_files(server):
    """The README's grpcurl stand-in: server/scripts/grpc_call.py, driven by reflection only."""
    import base64
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "server" / "scripts" / "grpc_call.py"
    body = json.dumps({"images": [{"pixels": base64.b64encode(bytes(784)).decode()}]})
    result = subprocess.run(
        [sys.executable, str(script), server.target, f"{SERVICE}/Classify", body],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["modelName"] == "mnist" and len(reply["predictions"][0]["probabilities"]) == 10
