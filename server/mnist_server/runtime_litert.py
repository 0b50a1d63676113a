"""The LiteRT runtime: a version's `model.tflite` (which the trainer converted from the same serving
signature and proved equal to the SavedModel before publishing) run by `ai-edge-litert`'s
interpreter with XNNPACK.

`--runtime litert` serves a model.tflite only with the proof of that check: metadata.json's "tflite"
record (classes equal on the test set, probabilities within the tolerance) for a file with the same
SHA-256. (`--runtime auto` checks LiteRT against the SavedModel itself at load: runtimes.py.)

At small batches it is several times cheaper than TensorFlow's eager call (measured in
docs/benchmarks.md): TensorFlow spends most of a batch-1 call in Python and op dispatch, not in
the convolutions. One interpreter per version; the batcher calls it from one thread at a time
(the interpreter is not thread-safe), and it resizes its input to each batch size (~30 us).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from importlib import metadata
from pathlib import Path

import numpy as np

from mnist_serving.layout import METADATA_FILE, TFLITE_FIELD, TFLITE_FILE

from .errors import ModelLoadError
from .model import METHOD_NAME, SIGNATURE_KEY, SignatureDescription, TensorDescription, check_signature

log = logging.getLogger(__name__)

NAME = "litert"
PROOF_KEY = TFLITE_FIELD  # metadata.json's record of the trainer's check


def version() -> str:
    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return "unknown"


def _describe(details: dict, name: str) -> TensorDescription:
    shape = tuple(int(d) for d in details["shape_signature"])
    return TensorDescription(name, np.dtype(details["dtype"]).name, shape)


class LiteRTRuntime:
    name = NAME
    # A batch on the event loop's thread costs less than the two thread hand-offs to a worker
    # (measured: ~100 us of CPU per batch) as long as LiteRT computes it in well under a millisecond.
    inline_max_batch = 1 << 30

    def __init__(self, interpreter, runner, signature: SignatureDescription):
        self._interpreter = interpreter
        self._runner = runner
        self.signature = signature
        self._lock = threading.Lock()  # one call at a time: the interpreter is not thread-safe

    @classmethod
    def load(cls, path: Path, threads: int, require_proof: bool = True) -> LiteRTRuntime:
        model_file = path / TFLITE_FILE
        if not model_file.is_file():
            raise ModelLoadError(
                f"{path} has no {TFLITE_FILE} (the LiteRT runtime needs it; mnist-trainer "
                "exports one into every version, or serve this version with "
                "--runtime tensorflow or auto)"
            )
        data = model_file.read_bytes()
        if require_proof:
            check_proof(path, data)
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_content=data, num_threads=threads)
            signatures = interpreter.get_signature_list()
            if SIGNATURE_KEY not in signatures:
                raise ModelLoadError(
                    f"{model_file} has no '{SIGNATURE_KEY}' signature (found: {', '.join(signatures) or 'none'})"
                )
            runner = interpreter.get_signature_runner(SIGNATURE_KEY)
        except ModelLoadError:
            raise
        except Exception as exc:  # a truncated or foreign file: ValueError/RuntimeError from the C++ side
            raise ModelLoadError(
                f"cannot load {model_file}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        signature = check_signature(
            SignatureDescription(
                SIGNATURE_KEY,
                METHOD_NAME,
                tuple(_describe(d, k) for k, d in sorted(runner.get_input_details().items())),
                tuple(_describe(d, k) for k, d in sorted(runner.get_output_details().items())),
            ),
            model_file,
        )
        return cls(interpreter, runner, signature)

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        # The runner copies every output out of the interpreter's buffers, so results stay valid
        # after the next call.
        with self._lock:
            return self._runner(**{self.signature.input.name: images})

    def unload(self) -> None:
        self._runner = None
        self._interpreter = None


def check_proof(path: Path, data: bytes) -> dict:
    """metadata.json's record that the trainer proved this very file equal to the SavedModel."""
    metadata_file = path / METADATA_FILE
    try:
        record = json.loads(metadata_file.read_text("utf-8")).get(PROOF_KEY)
    except (OSError, ValueError, AttributeError):
        record = None
    problem = None
    if not isinstance(record, dict):
        problem = f'{metadata_file} has no "tflite" record of its check against the SavedModel'
    elif record.get("sha256") != hashlib.sha256(data).hexdigest():
        problem = f"its SHA-256 differs from the file checked at export ({metadata_file})"
    elif not (
        record.get("classes_equal") is True
        and record.get("max_abs_probability_difference", 1.0) <= record.get("tolerance", 0.0)
    ):
        problem = f"the check recorded in {metadata_file} failed"
    if problem:
        raise ModelLoadError(
            f"{path / TFLITE_FILE} is not proven equal to the SavedModel: {problem} "
            "(export with mnist-trainer, which proves it, or serve with --runtime auto, "
            "which checks it against the SavedModel at load)"
        )
    return record
