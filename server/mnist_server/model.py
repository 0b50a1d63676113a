"""One loaded model version: its files read and checked, a runtime to compute with, warmed up.

What is runtime-specific (TensorFlow's SavedModel, LiteRT's model.tflite) lives in runtime_*.py;
runtimes.py picks one per version. Everything above the batcher sees only `LoadedModel.predict`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_serving.images import DEFAULT_PREPARATION, PREPARATIONS
from mnist_serving.layout import IMAGE_PREPARATION_FIELD, LABELS_FILE, METADATA_FILE

from .errors import ModelLoadError

SIGNATURE_KEY = "serving_default"
METHOD_NAME = "tensorflow/serving/predict"
REQUIRED_OUTPUTS = ("probabilities", "classes")


@dataclass(frozen=True)
class TensorDescription:
    """One input or output of the served signature. shape uses -1 for a free dimension."""

    name: str
    dtype: str  # numpy dtype name: "uint8", "float32", "int64"
    shape: tuple[int, ...]


@dataclass(frozen=True)
class SignatureDescription:
    """The real signature, as TF Serving's GetModelMetadata and KServe's ModelMetadata expose it."""

    key: str
    method_name: str
    inputs: tuple[TensorDescription, ...]
    outputs: tuple[TensorDescription, ...]

    @property
    def input(self) -> TensorDescription:
        return self.inputs[0]

    def output(self, name: str) -> TensorDescription:
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        raise KeyError(name)


@dataclass(frozen=True)
class DeviceChoice:
    kind: str  # "cpu" or "gpu"
    name: str  # TensorFlow device string, e.g. "/CPU:0"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_signature(signature: SignatureDescription, path: Path) -> SignatureDescription:
    """The contract every runtime's signature must meet: one uint8 [-1, 28, 28] input, the outputs
    the adapters read. Raises ModelLoadError naming what is wrong."""
    if len(signature.inputs) != 1:
        raise ModelLoadError(
            f"{path}: signature must take exactly one input, takes {[t.name for t in signature.inputs]}"
        )
    image = signature.inputs[0]
    if image.dtype != "uint8" or len(image.shape) != 3 or image.shape[1:] != (28, 28):
        raise ModelLoadError(
            f"{path}: input '{image.name}' must be uint8 [-1, 28, 28], is {image.dtype} {list(image.shape)}"
        )
    names = {t.name for t in signature.outputs}
    missing = [n for n in REQUIRED_OUTPUTS if n not in names]
    if missing:
        raise ModelLoadError(f"{path}: signature lacks outputs {missing} (has {sorted(names)})")
    return signature


@dataclass
class LoadedModel:
    name: str
    version: int
    path: Path
    device: DeviceChoice
    signature: SignatureDescription
    class_names: tuple[str, ...]
    metadata: dict
    metadata_json: str
    load_seconds: float = 0.0
    runtime: Any = field(default=None, repr=False)  # a runtimes.Runtime; None once unloaded
    # The export's own serving SignatureDef, serialized (TF Serving's GetModelMetadata returns it).
    signature_def: bytes = field(default=b"", repr=False)

    @property
    def image_preparation(self) -> str:
        """How PNG/JPEG inputs are made into this model's 28x28 images (metadata.json's
        `image_preparation`, checked at load; exports without it are MNIST digits)."""
        return self.metadata.get(IMAGE_PREPARATION_FIELD, DEFAULT_PREPARATION)

    @classmethod
    def load(
        cls, name: str, version: int, path: Path, device: DeviceChoice, runtime: Any, signature_def: bytes = b""
    ) -> LoadedModel:
        """Reads and checks one version directory's labels and metadata around a loaded runtime
        (runtimes.load_model does both; blocking: call it off the event loop)."""
        started = time.perf_counter()
        signature = runtime.signature
        class_names = cls._read_class_names(path, signature)
        metadata, metadata_json = cls._read_metadata(path)
        return cls(
            name,
            version,
            path,
            device,
            signature,
            class_names,
            metadata,
            metadata_json,
            time.perf_counter() - started,
            runtime,
            signature_def=signature_def,
        )

    @staticmethod
    def _read_class_names(path: Path, signature: SignatureDescription) -> tuple[str, ...]:
        classes = signature.output("probabilities").shape[-1]
        labels_path = path / LABELS_FILE
        if not labels_path.is_file():
            if classes < 1:
                raise ModelLoadError(f"{path}: no {LABELS_FILE} and the number of classes is unknown")
            return tuple(str(i) for i in range(classes))
        names = tuple(line.strip() for line in labels_path.read_text("utf-8").splitlines() if line.strip())
        if classes > 0 and len(names) != classes:
            raise ModelLoadError(f"{labels_path} has {len(names)} labels, the model has {classes} classes")
        return names

    @staticmethod
    def _read_metadata(path: Path) -> tuple[dict, str]:
        metadata_path = path / METADATA_FILE
        if not metadata_path.is_file():
            return {}, "{}"
        text = metadata_path.read_text("utf-8")
        try:
            metadata = json.loads(text)
        except ValueError as exc:
            raise ModelLoadError(f"{metadata_path} is not valid JSON: {exc}") from None
        if not isinstance(metadata, dict):
            raise ModelLoadError(f"{metadata_path} must hold a JSON object")
        preparation = metadata.get(IMAGE_PREPARATION_FIELD, DEFAULT_PREPARATION)
        if preparation not in PREPARATIONS:
            raise ModelLoadError(
                f"{metadata_path}: image_preparation '{preparation}' is unknown to this "
                f"server; it knows {', '.join(PREPARATIONS)}"
            )
        return metadata, text

    @property
    def runtime_name(self) -> str:
        return getattr(self.runtime, "name", "none")

    @property
    def input_name(self) -> str:
        return self.signature.input.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.signature.input.shape

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 [N, 28, 28] -> every signature output as numpy, leading axis N. Blocking."""
        return self.runtime.predict(images)

    def warm_up(self, batch_sizes: tuple[int, ...] = (1, 8)) -> float:
        """Runs the model once per batch size (first calls are slow) and checks what comes out."""
        started = time.perf_counter()
        for size in batch_sizes:
            try:
                outputs = self.predict(np.zeros((size, 28, 28), np.uint8))
            except Exception as exc:
                raise ModelLoadError(
                    f"{self.path}: warm-up at batch {size} failed: {type(exc).__name__}: {exc}"
                ) from exc
            probabilities = outputs["probabilities"]
            if probabilities.shape != (size, len(self.class_names)):
                raise ModelLoadError(
                    f"{self.path}: warm-up at batch {size} gave probabilities of shape "
                    f"{list(probabilities.shape)}, expected [{size}, {len(self.class_names)}]"
                )
            if not np.all(np.isfinite(probabilities)):
                raise ModelLoadError(f"{self.path}: warm-up gave non-finite probabilities")
            if outputs["classes"].shape != (size,):
                raise ModelLoadError(
                    f"{self.path}: warm-up gave classes of shape {list(outputs['classes'].shape)}, expected [{size}]"
                )
        return time.perf_counter() - started

    def unload(self) -> None:
        """Drops the runtime; memory is freed when the last batch referencing it ends."""
        if self.runtime is not None:
            self.runtime.unload()
        self.runtime = None
