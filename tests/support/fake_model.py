"""A fake MNIST model for in-process server tests: the real export's signature, class names and
metadata, answers from a fixed rule instead of a network, and no TensorFlow to set up or run.

    base = write_fake_versions(tmp_path / "mnist", versions=(1, 2))
    server = ModelServer(settings, loader=fake_loader())     # tests/support/inprocess.py does this

Its answer (`fake_classes`) is a checksum of the pixels weighted by their place, mod 10: not a
classifier, but deterministic, spread over all ten classes, and changed by almost any change of a
pixel's value or place, so a protocol that mangles an image (wrong layout, off-by-one scaling) gives
another class. `logits` and `probabilities` follow from the class; the probabilities sum to 1.

The signature (names, dtypes, shapes) and the SignatureDef are what the trainer exports
(tests/integration/test_compat_tfserving.py and test_server_api.py check them against a real export).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnist_server.model import (
    LABELS_FILE,
    METADATA_FILE,
    METHOD_NAME,
    SIGNATURE_KEY,
    DeviceChoice,
    LoadedModel,
    SignatureDescription,
    TensorDescription,
)

RUNTIME_NAME = "fake"
CLASS_NAMES = tuple(str(digit) for digit in range(10))
SIGNATURE = SignatureDescription(
    SIGNATURE_KEY,
    METHOD_NAME,
    inputs=(TensorDescription("images", "uint8", (-1, 28, 28)),),
    # sorted by name, as runtime_tensorflow describes a SavedModel's outputs
    outputs=(
        TensorDescription("classes", "int64", (-1,)),
        TensorDescription("logits", "float32", (-1, 10)),
        TensorDescription("probabilities", "float32", (-1, 10)),
    ),
)
# The SavedModel's tensor names (TF Serving's GetModelMetadata shows them).
TENSOR_NAMES = {
    "images": "serving_default_images:0",
    "classes": "StatefulPartitionedCall:0",
    "logits": "StatefulPartitionedCall:1",
    "probabilities": "StatefulPartitionedCall:2",
}
METADATA = {
    "dataset": "mnist",
    "model": "fake",
    "class_names": list(CLASS_NAMES),
    "image_preparation": "mnist-digit",
    "signature": {
        "name": SIGNATURE_KEY,
        "inputs": {"images": "uint8 [-1, 28, 28]"},
        "outputs": {"probabilities": "float32 [-1, 10]", "classes": "int64 [-1]", "logits": "float32 [-1, 10]"},
    },
}
_WEIGHTS = (np.arange(28 * 28) * 7 % 11 + 1).astype(np.int64)  # not symmetric in row and column


def fake_classes(images: np.ndarray) -> np.ndarray:
    """The fake's class for each uint8 [N, 28, 28] image: sum(pixel * (place * 7 % 11 + 1)) % 10, int64."""
    flat = np.asarray(images, np.uint8).reshape(len(images), 28 * 28).astype(np.int64)
    return (flat @ _WEIGHTS) % 10


def fake_outputs(images: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of the signature: the class gets logit 0, the others -1 per step away (mod 10)."""
    classes = fake_classes(images)
    logits = -((np.arange(10)[None, :] - classes[:, None]) % 10).astype(np.float32)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    return {"classes": classes, "logits": logits, "probabilities": probabilities}


class FakeRuntime:
    """A runtimes.Runtime: `predict` answers `fake_outputs`, after `compute_s` seconds of sleep and,
    when a `gate` is given, once the gate is open (a test holds the model busy for as long as it needs)."""

    name = RUNTIME_NAME
    signature = SIGNATURE
    GATE_TIMEOUT_S = 60.0  # a test that forgets to open its gate fails instead of hanging

    def __init__(self, compute_s: float = 0.0, inline_max_batch: int = 0, gate: threading.Event | None = None):
        self.compute_s = compute_s
        self.inline_max_batch = inline_max_batch  # 0: batches run on the model worker threads, as TensorFlow's
        self.gate = gate
        self.batch_sizes: list[int] = []

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
            raise ValueError(f"the fake model takes uint8 [N, 28, 28], got {images.dtype} {list(images.shape)}")
        self.batch_sizes.append(len(images))
        if self.gate is not None and not self.gate.wait(self.GATE_TIMEOUT_S):
            raise RuntimeError(f"the fake model's gate stayed closed for {self.GATE_TIMEOUT_S:.0f} s")
        if self.compute_s:
            time.sleep(self.compute_s)
        return fake_outputs(images)

    def unload(self) -> None:
        pass


def signature_def() -> bytes:
    """The serialized serving SignatureDef of a real export of this signature (imports TensorFlow's
    proto modules, as the server's TF Serving adapter does anyway)."""
    from tensorflow.core.framework import tensor_shape_pb2, types_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    dtypes = {"uint8": types_pb2.DT_UINT8, "int64": types_pb2.DT_INT64, "float32": types_pb2.DT_FLOAT}

    def info(tensor: TensorDescription) -> meta_graph_pb2.TensorInfo:
        return meta_graph_pb2.TensorInfo(
            name=TENSOR_NAMES[tensor.name],
            dtype=dtypes[tensor.dtype],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in tensor.shape]
            ),
        )

    result = meta_graph_pb2.SignatureDef(method_name=METHOD_NAME)
    for tensor in SIGNATURE.inputs:
        result.inputs[tensor.name].CopyFrom(info(tensor))
    for tensor in SIGNATURE.outputs:
        result.outputs[tensor.name].CopyFrom(info(tensor))
    return result.SerializeToString(deterministic=True)


def write_fake_versions(
    base_path: Path, versions: tuple[int, ...] = (1,), *, class_names=CLASS_NAMES, metadata: dict | None = None
) -> Path:
    """Version directories the server's repository accepts (a placeholder saved_model.pb, the
    trainer's labels.txt and metadata.json) for `fake_loader` to "load"; returns base_path."""
    for version in versions:
        path = Path(base_path) / str(version)
        (path / LABELS_FILE).parent.mkdir(parents=True, exist_ok=True)
        (path / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (path / "saved_model.pb").write_bytes(b"not a SavedModel: served by tests/support/fake_model.py")
        (path / LABELS_FILE).write_text("".join(f"{name}\n" for name in class_names), "utf-8")
        (path / METADATA_FILE).write_text(
            json.dumps({**METADATA, "class_names": list(class_names), **(metadata or {})}, indent=2), "utf-8"
        )
    return Path(base_path)


def fake_loader(
    compute_s: float = 0.0,
    inline_max_batch: int = 0,
    gate: threading.Event | None = None,
) -> Callable[[str, int, Path, DeviceChoice], LoadedModel]:
    """A loader for ModelServer/ModelRepository: each version directory's labels and metadata are
    read and checked by the real LoadedModel.load, around a FakeRuntime."""
    definition = signature_def()

    def load(name: str, version: int, path: Path, device: DeviceChoice) -> LoadedModel:
        return LoadedModel.load(
            name, version, path, device, FakeRuntime(compute_s, inline_max_batch, gate), signature_def=definition
        )

    return load
