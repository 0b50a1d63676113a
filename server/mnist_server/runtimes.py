"""Which runtime runs a model version: `--runtime auto|tensorflow|litert`.

- tensorflow: the SavedModel's serving signature.
- litert: the version's model.tflite, with the trainer's record that it was proven equal to the
  SavedModel; a version without them is rejected (older versions keep serving).
- auto: LiteRT for batches up to `litert_max_batch` images and TensorFlow above, where (measured by
  `make bench`, docs/benchmarks.md) TensorFlow's parallel kernels overtake LiteRT's per-call thrift.
  Without model.tflite, on a GPU, or when the two disagree on a check batch at load, auto serves the
  version with TensorFlow alone and logs why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from mnist_serving.layout import TFLITE_FILE

from .errors import ModelLoadError
from .model import DeviceChoice, LoadedModel, SignatureDescription
from .runtime_litert import LiteRTRuntime
from .runtime_tensorflow import TensorFlowRuntime, read_signature_def

log = logging.getLogger(__name__)

CHOICES = ("auto", "tensorflow", "litert")
PROBABILITY_TOLERANCE = 1e-5  # the trainer's, for the same check on the whole test set


class Runtime(Protocol):
    name: str
    signature: SignatureDescription
    inline_max_batch: int  # the largest batch worth computing on the event loop's thread

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]: ...

    def unload(self) -> None: ...


class SplitRuntime:
    """LiteRT for small batches, TensorFlow for large ones (auto). Two batches may compute at once
    (--max-concurrent-batches): TensorFlow's function is thread-safe, LiteRT's runtime takes a lock."""

    name = "litert+tensorflow"

    def __init__(self, small: Runtime, large: Runtime, litert_max_batch: int):
        self._small = small
        self._large = large
        self.litert_max_batch = litert_max_batch
        self.inline_max_batch = litert_max_batch
        self.signature = large.signature

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        runtime = self._small if len(images) <= self.litert_max_batch else self._large
        return runtime.predict(images)

    def unload(self) -> None:
        self._small.unload()
        self._large.unload()


@dataclass(frozen=True)
class RuntimeOptions:
    kind: str = "auto"  # one of CHOICES
    threads: int = 1  # LiteRT interpreter threads (TensorFlow's are set process-wide)
    litert_max_batch: int = 32  # auto: the largest batch LiteRT runs


def load_model(
    name: str, version: int, path: Path, device: DeviceChoice, options: RuntimeOptions = RuntimeOptions("tensorflow")
) -> LoadedModel:
    """One version directory loaded with the runtime(s) `options` choose (blocking). Raises ModelLoadError."""
    started = time.perf_counter()
    model = LoadedModel.load(
        name, version, path, device, load_runtime(path, device, options), signature_def=read_signature_def(path)
    )
    return replace(model, load_seconds=time.perf_counter() - started)


def load_runtime(path: Path, device: DeviceChoice, options: RuntimeOptions) -> Runtime:
    """Loads the runtime(s) for one version directory (blocking). Raises ModelLoadError."""
    if options.kind == "litert":
        return LiteRTRuntime.load(path, options.threads)
    tensorflow = TensorFlowRuntime.load(path, device)
    if options.kind == "tensorflow" or options.litert_max_batch < 1:
        return tensorflow
    if device.kind != "cpu":
        log.info("%s: --runtime auto on %s: TensorFlow only (LiteRT runs on the CPU)", path, device.kind)
        return tensorflow
    if not (path / TFLITE_FILE).is_file():
        log.warning("%s has no %s: --runtime auto serves it with TensorFlow at every batch size", path, TFLITE_FILE)
        return tensorflow
    try:
        litert = LiteRTRuntime.load(path, options.threads, require_proof=False)
        compare(litert, tensorflow, path)
    except Exception as exc:  # ModelLoadError, or whatever the interpreter raised on the check batch
        reason = (
            exc.message if isinstance(exc, ModelLoadError) else f"{TFLITE_FILE} failed: {type(exc).__name__}: {exc}"
        )
        log.warning("--runtime auto: %s; serving %s with TensorFlow at every batch size", reason, path)
        return tensorflow
    return SplitRuntime(litert, tensorflow, options.litert_max_batch)


def compare(litert: Runtime, tensorflow: Runtime, path: Path, images: int = 64) -> None:
    """Both runtimes on the same images (blank, and random pixels: deterministic): same signature,
    same classes, probabilities within PROBABILITY_TOLERANCE. Raises ModelLoadError."""
    if litert.signature != tensorflow.signature:
        raise ModelLoadError(
            f"{path / TFLITE_FILE} describes another signature than saved_model.pb "
            f"({litert.signature} vs {tensorflow.signature})"
        )
    batch = np.random.default_rng(0).integers(0, 256, (images, 28, 28), dtype=np.uint8)
    batch[0] = 0
    ours, theirs = litert.predict(batch), tensorflow.predict(batch)
    differ = int(np.count_nonzero(ours["classes"] != theirs["classes"]))
    gap = float(np.max(np.abs(ours["probabilities"] - theirs["probabilities"])))
    if differ or not gap <= PROBABILITY_TOLERANCE:
        raise ModelLoadError(
            f"{path / TFLITE_FILE} disagrees with the SavedModel on {images} check images "
            f"({differ} classes differ, probabilities by up to {gap:.2g})"
        )
