"""model.tflite beside saved_model.pb: converted from the serving signature, proven equal before publishing.

The server (and TF Serving's --prefer_tflite_model) may answer from this file instead of the SavedModel, so
`verify` runs it in the runtime the server uses (ai-edge-litert) on the whole test set and raises ExportError
on any difference; `publish` then discards the version.
"""

from __future__ import annotations

import hashlib
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import tensorflow as tf

from mnist_serving.layout import TFLITE_FILE

from .errors import ExportError
from .export import SIGNATURE

CONVERTER = "TFLiteConverter.from_concrete_functions"
TOLERANCE = 1e-5  # max |probability difference|; a float32 conversion (no optimisations) stays well below
_CHUNK = 1000  # images per interpreter call: bounds the interpreter's tensor memory


def runtime_version() -> str:
    return f"ai-edge-litert {metadata.version('ai-edge-litert')}"


def convert(directory: Path) -> bytes:
    """The SavedModel's serving signature as a float32 TFLite flatbuffer (no quantisation)."""
    # Not from_saved_model: on this export it yields a ~8 kB model without the weights that answers NaN.
    # Passing the loaded object keeps its variables alive for the converter to freeze into constants.
    loaded = tf.saved_model.load(str(directory))
    return tf.lite.TFLiteConverter.from_concrete_functions([loaded.signatures[SIGNATURE]], loaded).convert()


def saved_model_signature(directory: Path) -> dict:
    """{"inputs"|"outputs": {name: (dtype, shape)}} of the serving signature, unknown sizes as -1 (as LiteRT)."""
    serve = tf.saved_model.load(str(directory)).signatures[SIGNATURE]
    inputs, outputs = serve.structured_input_signature[1], serve.structured_outputs
    return {
        "inputs": {k: _spec(s.dtype.name, s.shape.as_list()) for k, s in inputs.items()},
        "outputs": {k: _spec(s.dtype.name, s.shape.as_list()) for k, s in outputs.items()},
    }


def write_tflite(directory: Path, images: np.ndarray, reference: dict[str, np.ndarray], threads: int) -> dict:
    """Converts the SavedModel in `directory`, proves it on `images`, writes model.tflite; the figures."""
    started = time.perf_counter()
    data = convert(directory)
    converted = time.perf_counter()
    figures = verify(data, images, reference, saved_model_signature(directory), threads)
    (directory / TFLITE_FILE).write_bytes(data)
    # The server checks the digest: the file it runs is the one proven here.
    return {
        "file": TFLITE_FILE,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "converter": CONVERTER,
        "runtime": runtime_version(),
        **figures,
        "convert_seconds": round(converted - started, 2),
        "verify_seconds": round(time.perf_counter() - converted, 2),
    }


def verify(
    data: bytes, images: np.ndarray, reference: dict[str, np.ndarray], signature: dict, threads: int = 1
) -> dict:
    """Runs `data` with ai-edge-litert on `images` and compares it with the SavedModel.

    `reference` is the SavedModel's output on the same images (classes, probabilities, logits) and
    `signature` its serving signature (`saved_model_signature`). Returns the figures for metadata.json;
    raises ExportError naming every difference.
    """
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=data, num_threads=threads)
    except Exception as exc:  # a corrupt flatbuffer: ValueError/RuntimeError from the C++ side
        raise ExportError(f"{TFLITE_FILE} does not load in {runtime_version()}: {exc}") from exc
    runner = _runner_with_signature(interpreter, signature)
    (input_name,) = signature["inputs"]
    parts = [runner(**{input_name: images[i : i + _CHUNK]}) for i in range(0, len(images), _CHUNK)]
    got = {key: np.concatenate([p[key] for p in parts]) for key in reference}

    problems = [
        f"{key} has shape {got[key].shape}, the SavedModel's {ref.shape}"
        for key, ref in reference.items()
        if got[key].shape != ref.shape
    ]
    if not problems:
        differ = np.flatnonzero(got["classes"] != reference["classes"])
        if len(differ):
            i = differ[0]
            problems.append(
                f"classes differ on {len(differ)} of {len(images)} test images (first: image {i}, "
                f"class {got['classes'][i]}, the SavedModel's {reference['classes'][i]})"
            )
        differences = {}
        for key in ("probabilities", "logits"):
            bad = np.count_nonzero(~np.isfinite(got[key]).all(axis=1))
            if bad:  # what a model.tflite without its weights answers (see convert)
                problems.append(f"{key} are NaN or infinite for {bad} of {len(images)} test images")
            differences[key] = float(np.max(np.abs(got[key] - reference[key]), initial=0.0))
        if not differences["probabilities"] <= TOLERANCE:  # written so that NaN fails too
            problems.append(
                f"probabilities differ by up to {differences['probabilities']:.2g}, more than {TOLERANCE:g}"
            )
        # Logits are recorded, not held to a tolerance: their scale depends on training, and what clients
        # read (classes, probabilities) is already held to one.
    if problems:
        raise ExportError(f"{TFLITE_FILE} disagrees with the SavedModel: {'; '.join(problems)}")
    return {
        "verified_images": int(len(images)),
        "classes_equal": True,
        "max_abs_probability_difference": differences["probabilities"],
        "max_abs_logit_difference": differences["logits"],
        "tolerance": TOLERANCE,
    }


def _spec(dtype: str, shape) -> tuple[str, tuple[int, ...]]:
    return dtype, tuple(-1 if d is None else int(d) for d in shape)


def _runner_with_signature(interpreter, signature: dict):
    """The serving signature's runner, once names, dtypes and shapes are exactly the SavedModel's."""
    expected = {SIGNATURE: {kind: sorted(signature[kind]) for kind in ("inputs", "outputs")}}
    found = {
        name: {kind: sorted(names) for kind, names in entry.items()}
        for name, entry in interpreter.get_signature_list().items()
    }
    if found != expected:
        raise ExportError(f"{TFLITE_FILE} has the signatures {found}, the SavedModel {expected}")
    runner = interpreter.get_signature_runner(SIGNATURE)
    details = {"inputs": runner.get_input_details(), "outputs": runner.get_output_details()}
    for kind, specs in signature.items():
        for name, spec in specs.items():
            d = details[kind][name]
            got = _spec(np.dtype(d["dtype"]).name, d["shape_signature"])
            if got != spec:
                raise ExportError(
                    f"{TFLITE_FILE}'s {name} is {got[0]} {list(got[1])}, the SavedModel's {spec[0]} {list(spec[1])}"
                )
    return runner
