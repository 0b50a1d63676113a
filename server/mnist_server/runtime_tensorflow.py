"""The TensorFlow runtime: a version's SavedModel `serving_default` signature, plus TensorFlow's
process setup (threads, GPU, thread spinning).

TensorFlow is imported inside functions, so importing this module stays cheap; the server imports
TensorFlow once, at start-up, when a runtime that needs it is configured.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError, ServingError
from .model import (
    METHOD_NAME,
    SIGNATURE_KEY,
    DeviceChoice,
    SignatureDescription,
    TensorDescription,
    check_signature,
    cpu_count,
)

log = logging.getLogger(__name__)

NAME = "tensorflow"


class DeviceUnavailable(ServingError):
    """--device gpu on a machine where TensorFlow sees no GPU (a start-up error)."""


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
        raise DeviceUnavailable(
            "--device gpu was requested but TensorFlow sees no GPU "
            "(check the driver, CUDA libraries and `tensorflow[and-cuda]`; "
            "--log-level DEBUG shows TensorFlow's own CUDA messages); "
            "use --device auto or cpu"
        )
    if device == "cpu" or not gpus:
        if gpus:
            tf.config.set_visible_devices([], "GPU")
        choice = DeviceChoice("cpu", "/CPU:0")
    else:
        for gpu in gpus:  # take memory as needed instead of all of it up front
            tf.config.experimental.set_memory_growth(gpu, True)
        choice = DeviceChoice("gpu", "/GPU:0")
    log.info(
        "TensorFlow %s on %s (%s); intra-op threads %d, inter-op threads %d, spinning %s; GPUs seen: %d",
        tf.__version__,
        choice.kind,
        choice.name,
        intra,
        inter,
        "off" if thread_spinning_disabled() else "on",
        len(gpus),
    )
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


class TensorFlowRuntime:
    """A loaded SavedModel's serving signature. predict() blocks (it releases the GIL while computing)."""

    name = NAME
    inline_max_batch = 0  # TensorFlow's eager call holds the GIL for most of ~0.7 ms: on the worker thread

    def __init__(self, function: Any, saved_model: Any, signature: SignatureDescription, device: DeviceChoice):
        self._function = function
        self._saved_model = saved_model
        self.signature = signature
        self._device = device

    @classmethod
    def load(cls, path: Path, device: DeviceChoice) -> TensorFlowRuntime:
        import tensorflow as tf

        try:
            with tf.device(device.name):
                saved_model = tf.saved_model.load(str(path))
        except Exception as exc:  # TF raises many types for broken exports
            raise ModelLoadError(
                f"cannot load SavedModel {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        signatures = getattr(saved_model, "signatures", {})
        if SIGNATURE_KEY not in signatures:
            raise ModelLoadError(
                f"{path} has no '{SIGNATURE_KEY}' signature (found: {', '.join(signatures) or 'none'})"
            )
        function = signatures[SIGNATURE_KEY]
        _, input_specs = function.structured_input_signature
        signature = check_signature(
            SignatureDescription(
                SIGNATURE_KEY,
                METHOD_NAME,
                tuple(_describe(spec, key) for key, spec in sorted(input_specs.items())),
                tuple(_describe(spec, key) for key, spec in sorted(function.structured_outputs.items())),
            ),
            path,
        )
        return cls(function, saved_model, signature, device)

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        import tensorflow as tf

        with tf.device(self._device.name):
            outputs = self._function(**{self.signature.input.name: images})
        return {key: value.numpy() for key, value in outputs.items()}

    def unload(self) -> None:
        self._function = None
        self._saved_model = None


def read_signature_def(path: Path) -> bytes:
    """The export's own serving SignatureDef, serialized (TF Serving's GetModelMetadata returns it);
    read at load so that it outlives the version's files being deleted from disk."""
    from tensorflow.core.protobuf import saved_model_pb2

    if not (path / "saved_model.pb").is_file():  # a text-format export: none to return as is
        return b""
    saved_model = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    return saved_model.meta_graphs[0].signature_def[SIGNATURE_KEY].SerializeToString()
