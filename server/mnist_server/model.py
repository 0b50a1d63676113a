"""One loaded SavedModel version: load, check, warm up, predict. Plus TensorFlow's process setup.

TensorFlow is imported lazily (inside functions) so that importing this module, the config or
the tests' helpers stays cheap; the server process imports it once at start-up.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError, ServingError

log = logging.getLogger(__name__)

SIGNATURE_KEY = "serving_default"
METHOD_NAME = "tensorflow/serving/predict"
LABELS_FILE = Path("assets") / "labels.txt"
METADATA_FILE = Path("assets.extra") / "metadata.json"
REQUIRED_OUTPUTS = ("probabilities", "classes")


class DeviceUnavailable(ServingError):
    """--device gpu on a machine where TensorFlow sees no GPU (a start-up error)."""


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


def configure_tensorflow(device: str, intra_op_threads: int, inter_op_threads: int) -> DeviceChoice:
    """Once per process, before any model loads: threads, GPU visibility and memory growth."""
    import tensorflow as tf

    intra = intra_op_threads or cpu_count()
    # One model call at a time runs (one worker thread) and the CNN is a chain of ops: parallel ops
    # buy little, while a second pool would compete with the intra-op pool for the same cores.
    inter = inter_op_threads or 1
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    disable_thread_spinning()
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise DeviceUnavailable("--device gpu was requested but TensorFlow sees no GPU "
                                "(check the driver, CUDA libraries and `tensorflow[and-cuda]`); "
                                "use --device auto or cpu")
    if device == "cpu" or not gpus:
        if gpus:
            tf.config.set_visible_devices([], "GPU")
        choice = DeviceChoice("cpu", "/CPU:0")
    else:
        for gpu in gpus:  # take memory as needed instead of all of it up front
            tf.config.experimental.set_memory_growth(gpu, True)
        choice = DeviceChoice("gpu", "/GPU:0")
    log.info("TensorFlow %s on %s (%s); intra-op threads %d, inter-op threads %d, spinning %s; GPUs seen: %d",
             tf.__version__, choice.kind, choice.name, intra, inter,
             "off" if thread_spinning_disabled() else "on", len(gpus))
    return choice


def disable_thread_spinning() -> None:
    """TensorFlow's pool threads spin for a while after each op, waiting for more work. Between
    requests that burns CPU the event loop and the clients need (measured: about 150-200 us per
    batch-1 call). TF 2 has no public switch for ConfigProto.experimental.disable_thread_spinning,
    so it goes into the eager context's config before the context starts (the start-up log says
    whether it is set; a test checks that line)."""
    from tensorflow.python.eager import context

    eager = context.context()
    config = getattr(eager, "_config", None)
    if getattr(eager, "_context_handle", None) is not None:
        log.warning("TensorFlow already started: cannot turn thread spinning off")
        return
    from tensorflow.core.protobuf import config_pb2

    merged = config_pb2.ConfigProto()
    if config is not None:
        merged.CopyFrom(config)
    merged.experimental.disable_thread_spinning = True
    eager._config = merged


def thread_spinning_disabled() -> bool:
    from tensorflow.python.eager import context

    return context.context().config.experimental.disable_thread_spinning


def _describe(spec: Any, name: str) -> TensorDescription:
    shape = tuple(-1 if dim is None else int(dim) for dim in spec.shape.as_list())
    return TensorDescription(name, spec.dtype.as_numpy_dtype().dtype.name, shape)


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
    _function: Any = field(default=None, repr=False)
    _saved_model: Any = field(default=None, repr=False)
    # The export's own serving SignatureDef (serialized; TF Serving's GetModelMetadata returns it),
    # read at load so that it outlives the version's files being deleted from disk.
    signature_def: bytes = field(default=b"", repr=False)

    @classmethod
    def load(cls, name: str, version: int, path: Path, device: DeviceChoice) -> "LoadedModel":
        """Loads and checks one version directory (blocking: call it off the event loop)."""
        import tensorflow as tf

        started = time.perf_counter()
        try:
            with tf.device(device.name):
                saved_model = tf.saved_model.load(str(path))
        except Exception as exc:  # TF raises many types for broken exports
            raise ModelLoadError(f"cannot load SavedModel {path}: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        signatures = getattr(saved_model, "signatures", {})
        if SIGNATURE_KEY not in signatures:
            raise ModelLoadError(f"{path} has no '{SIGNATURE_KEY}' signature "
                                 f"(found: {', '.join(signatures) or 'none'})")
        function = signatures[SIGNATURE_KEY]
        signature = cls._check_signature(function, path)
        class_names = cls._read_class_names(path, signature)
        metadata, metadata_json = cls._read_metadata(path)
        return cls(name, version, path, device, signature, class_names, metadata, metadata_json,
                   time.perf_counter() - started, function, saved_model,
                   signature_def=cls._read_signature_def(path))

    @staticmethod
    def _read_signature_def(path: Path) -> bytes:
        from tensorflow.core.protobuf import saved_model_pb2

        if not (path / "saved_model.pb").is_file():  # a text-format export: none to return as is
            return b""
        saved_model = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
        return saved_model.meta_graphs[0].signature_def[SIGNATURE_KEY].SerializeToString()

    @staticmethod
    def _check_signature(function: Any, path: Path) -> SignatureDescription:
        _, input_specs = function.structured_input_signature
        inputs = tuple(_describe(spec, key) for key, spec in sorted(input_specs.items()))
        outputs = tuple(_describe(spec, key) for key, spec in sorted(function.structured_outputs.items()))
        if len(inputs) != 1:
            raise ModelLoadError(f"{path}: signature must take exactly one input, takes "
                                 f"{[t.name for t in inputs]}")
        image = inputs[0]
        if image.dtype != "uint8" or len(image.shape) != 3 or image.shape[1:] != (28, 28):
            raise ModelLoadError(f"{path}: input '{image.name}' must be uint8 [-1, 28, 28], is "
                                 f"{image.dtype} {list(image.shape)}")
        names = {t.name for t in outputs}
        missing = [n for n in REQUIRED_OUTPUTS if n not in names]
        if missing:
            raise ModelLoadError(f"{path}: signature lacks outputs {missing} (has {sorted(names)})")
        return SignatureDescription(SIGNATURE_KEY, METHOD_NAME, inputs, outputs)

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
        return metadata, text

    @property
    def input_name(self) -> str:
        return self.signature.input.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.signature.input.shape

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 [N, 28, 28] -> every signature output as numpy, leading axis N. Blocking."""
        import tensorflow as tf

        with tf.device(self.device.name):
            outputs = self._function(**{self.input_name: images})
        return {key: value.numpy() for key, value in outputs.items()}

    def warm_up(self, batch_sizes: tuple[int, ...] = (1, 8)) -> float:
        """Runs the model once per batch size (first calls are slow) and checks what comes out."""
        started = time.perf_counter()
        for size in batch_sizes:
            try:
                outputs = self.predict(np.zeros((size, 28, 28), np.uint8))
            except Exception as exc:
                raise ModelLoadError(f"{self.path}: warm-up at batch {size} failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
            probabilities = outputs["probabilities"]
            if probabilities.shape != (size, len(self.class_names)):
                raise ModelLoadError(f"{self.path}: warm-up at batch {size} gave probabilities of shape "
                                     f"{list(probabilities.shape)}, expected [{size}, {len(self.class_names)}]")
            if not np.all(np.isfinite(probabilities)):
                raise ModelLoadError(f"{self.path}: warm-up gave non-finite probabilities")
            if outputs["classes"].shape != (size,):
                raise ModelLoadError(f"{self.path}: warm-up gave classes of shape "
                                     f"{list(outputs['classes'].shape)}, expected [{size}]")
        return time.perf_counter() - started

    def unload(self) -> None:
        """Drops the TensorFlow objects; memory is freed when the last batch referencing them ends."""
        self._function = None
        self._saved_model = None
