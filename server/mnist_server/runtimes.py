"""Which runtime runs a model version: `--runtime auto|tensorflow|litert`.

- tensorflow: the SavedModel's serving signature.
- litert: the version's model.tflite, with the trainer's record that it was proven equal to the
  SavedModel; a version without them is rejected (older versions keep serving).
- auto: LiteRT for batches up to `litert_max_batch` images and TensorFlow above. Where TensorFlow's
  parallel kernels overtake LiteRT's per-call thrift depends on the machine (`make bench`,
  docs/benchmarks.md: between 32 and 64 images on one Xeon, beyond 256 on an EPYC), so unless the flag
  fixes it, `calibrate` times both runtimes on this machine when a version loads. Without model.tflite,
  on a GPU, or when the two disagree on a check batch at load, auto serves the version with TensorFlow
  alone and logs why.
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
# Batch sizes `calibrate` times. Up to the first, LiteRT always computes: it was 7-14x faster than
# TensorFlow at batches 1-8 on every machine measured, and timing tiny calls is the noisiest part.
CALIBRATION_BATCHES = (16, 32, 64, 128, 256, 512, 1024)  # the last bounds the time spent: larger batches follow it
CALIBRATION_CALLS = 5  # per runtime and batch size, alternating, after one untimed call each; the fastest counts
# TensorFlow must be this much faster to take a batch size: LiteRT's batches skip two thread hand-offs
# (computed on the event loop's thread), and a near tie is as likely noise as a crossing.
CALIBRATION_MARGIN = 1.1


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
    litert_max_batch: int | None = None  # auto: the largest batch LiteRT runs; None: calibrate at load
    max_batch: int = 256  # the largest batch the batcher forms: calibration needs to look no further


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
    if options.kind == "tensorflow" or options.litert_max_batch == 0:
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
    litert_max = options.litert_max_batch
    if litert_max is None:
        litert_max, timings = calibrate(litert, tensorflow, options.max_batch)
        log.info(
            "%s: --runtime auto computes batches up to %d images with LiteRT, larger ones with TensorFlow "
            "(fastest call in ms, LiteRT vs TensorFlow: %s)",
            path,
            litert_max,
            ", ".join(f"{batch}: {lite * 1e3:.2f} vs {tf * 1e3:.2f}" for batch, (lite, tf) in timings.items()),
        )
    return SplitRuntime(litert, tensorflow, litert_max)


def calibrate(litert: Runtime, tensorflow: Runtime, max_batch: int) -> tuple[int, dict[int, tuple[float, float]]]:
    """Times both runtimes at the CALIBRATION_BATCHES below `max_batch` and at `max_batch`, and returns
    the largest size up to which TensorFlow was never CALIBRATION_MARGIN times faster, with the timings
    {batch: (litert_s, tensorflow_s)}. It stops at the first size TensorFlow wins: past the crossing,
    LiteRT's one-call cost only grows faster. Below the first size, LiteRT. The two runtimes' calls
    alternate and the fastest of each counts, so a busy moment (another version loading, traffic
    during a reload) slows both alike and rarely all of them."""
    largest_timed = min(max_batch, CALIBRATION_BATCHES[-1])
    batches = [batch for batch in CALIBRATION_BATCHES if batch < largest_timed] + [largest_timed]
    images = np.random.default_rng(1).integers(0, 256, (batches[-1], 28, 28), dtype=np.uint8)
    litert_max = 0
    timings: dict[int, tuple[float, float]] = {}
    for batch in batches:
        timings[batch] = fastest_calls((litert, tensorflow), images[:batch])
        if timings[batch][0] > CALIBRATION_MARGIN * timings[batch][1]:
            break
        litert_max = batch
    else:
        litert_max = max_batch  # LiteRT won at every size timed, the largest included
    return litert_max or max(1, batches[0] // 2), timings


def fastest_calls(runtimes: tuple[Runtime, Runtime], images: np.ndarray) -> tuple[float, float]:
    for runtime in runtimes:
        runtime.predict(images)  # first calls at a new size are slow for reasons no request would see again
    best = [float("inf")] * len(runtimes)
    for _ in range(CALIBRATION_CALLS):
        for index, runtime in enumerate(runtimes):
            started = time.perf_counter()
            runtime.predict(images)
            best[index] = min(best[index], time.perf_counter() - started)
    return best[0], best[1]


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
