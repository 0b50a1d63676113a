"""The trainer's model.tflite: exported beside saved_model.pb, proven equal to it, or nothing is published."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from mnist_trainer.datasets import TEST_IMAGES
from mnist_trainer.errors import ExportError
from mnist_trainer.export import predict_with_export
from mnist_trainer.idx import read_idx
from mnist_trainer.publish import publish
from mnist_trainer.tflite import convert, saved_model_signature, verify, write_tflite
from tests.conftest import run_trainer


def check_tflite_export(version: Path, images: np.ndarray) -> dict:
    """Asserts what every version must hold; checks model.tflite against the SavedModel independently."""
    tflite = json.loads((version / "assets.extra" / "metadata.json").read_text())["tflite"]
    assert tflite["file"] == "model.tflite" and tflite["bytes"] == (version / "model.tflite").stat().st_size
    assert tflite["converter"] == "TFLiteConverter.from_concrete_functions"
    assert tflite["runtime"] == f"ai-edge-litert {metadata.version('ai-edge-litert')}"
    assert tflite["verified_images"] == len(images) and tflite["classes_equal"] is True
    assert tflite["tolerance"] == 1e-5 and 0 <= tflite["max_abs_probability_difference"] <= 1e-5
    assert np.isfinite(tflite["max_abs_logit_difference"]) and tflite["convert_seconds"] > 0

    # Independently of the trainer's code: the file as the server loads it, against bare TensorFlow.
    runner = Interpreter(model_path=str(version / "model.tflite")).get_signature_runner("serving_default")
    sample = images[:100]
    lite = runner(images=sample)
    saved = tf.saved_model.load(str(version)).signatures["serving_default"](images=tf.constant(sample))
    np.testing.assert_array_equal(lite["classes"], saved["classes"].numpy())
    np.testing.assert_allclose(lite["probabilities"], saved["probabilities"].numpy(), rtol=0, atol=1e-5)
    assert lite["classes"].dtype == np.int64 and lite["probabilities"].shape == (100, 10)
    return tflite


@pytest.fixture(scope="module")
def test_images(synthetic_data_dir) -> np.ndarray:
    return read_idx(synthetic_data_dir / TEST_IMAGES)


def test_cnn_version_holds_a_proven_model_tflite(exported_model, test_images):
    tflite = check_tflite_export(exported_model / "1", test_images)
    assert tflite["bytes"] > 900_000  # the weights are in the file, as float32 (~240k of them)


def test_linear_model_exports_a_proven_model_tflite(tmp_path, synthetic_data_dir, test_images):
    base = tmp_path / "linear"
    result = run_trainer(synthetic_data_dir, base, "--model", "linear", "--steps", "50", "--no-report")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model.tflite" in result.stdout
    tflite = check_tflite_export(base / "1", test_images)
    assert 31_400 < tflite["bytes"] < 100_000  # 7850 float32 weights


# verify() on the real exported model: the SavedModel's answers as reference, then deliberately wrong ones.


@pytest.fixture(scope="module")
def proof_inputs(exported_model, test_images):
    version = exported_model / "1"
    return convert(version), predict_with_export(version, test_images), saved_model_signature(version)


def test_verify_accepts_the_true_reference(proof_inputs, test_images):
    data, reference, signature = proof_inputs
    figures = verify(data, test_images, reference, signature, threads=2)
    assert figures["verified_images"] == 500 and figures["classes_equal"] is True
    assert figures["max_abs_probability_difference"] <= 1e-5


def _flip_class_17(ref):
    ref["classes"][17] = (ref["classes"][17] + 1) % 10
    return ref


def _shift_probabilities(ref):
    ref["probabilities"] = ref["probabilities"] + 1e-3
    return ref


@pytest.mark.parametrize(
    "perturb, message",
    [
        (_flip_class_17, r"classes differ on 1 of 500 test images \(first: image 17, class \d, the SavedModel's \d\)"),
        (_shift_probabilities, r"probabilities differ by up to 0\.001, more than 1e-05"),
    ],
)
def test_verify_names_what_differs(proof_inputs, test_images, perturb, message):
    data, reference, signature = proof_inputs
    wrong = perturb({k: v.copy() for k, v in reference.items()})
    with pytest.raises(ExportError, match=r"^model\.tflite disagrees with the SavedModel: " + message):
        verify(data, test_images, wrong, signature)


def test_verify_catches_the_from_saved_model_trap(exported_model, proof_inputs, test_images):
    # The converter path convert() avoids: a model without its weights, answering NaN.
    data = tf.lite.TFLiteConverter.from_saved_model(str(exported_model / "1")).convert()
    _, reference, signature = proof_inputs
    with pytest.raises(ExportError, match="probabilities are NaN or infinite for 500 of 500 test images"):
        verify(data, test_images, reference, signature)


@pytest.mark.parametrize(
    "output, spec, message",
    [
        ("classes", ("int32", (-1,)), r"model\.tflite's classes is int64 \[-1\], the SavedModel's int32 \[-1\]"),
        (
            "scores",
            ("float32", (-1, 10)),
            r"model\.tflite has the signatures .*'outputs': \['classes', 'logits', 'probabilities'\]",
        ),
    ],
)
def test_verify_checks_the_signature(proof_inputs, test_images, output, spec, message):
    data, reference, signature = proof_inputs
    other = {"inputs": signature["inputs"], "outputs": {**signature["outputs"], output: spec}}
    with pytest.raises(ExportError, match=message):
        verify(data, test_images, reference, other)


def test_verify_rejects_a_truncated_file(proof_inputs, test_images):
    data, reference, signature = proof_inputs
    with pytest.raises(ExportError, match="model.tflite does not load in ai-edge-litert"):
        verify(data[: len(data) // 2], test_images, reference, signature)


def test_a_failed_proof_publishes_nothing(tmp_path, exported_model, proof_inputs, test_images):
    _, reference, _ = proof_inputs
    base = tmp_path / "models"

    def write(reference):
        def write_version(staging):  # what job.write_version does, with the SavedModel already trained
            shutil.copytree(
                exported_model / "1",
                staging,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("model.tflite", "assets.extra"),
            )
            write_tflite(staging, test_images, reference, threads=1)

        return write_version

    with pytest.raises(ExportError, match="classes differ on 1 of 500"):
        publish(base, write(_flip_class_17({k: v.copy() for k, v in reference.items()})))
    assert list(base.iterdir()) == []  # neither a version nor a staging directory
    # The control: the same write with the true reference publishes version 1, model.tflite included.
    assert publish(base, write(reference)) == (1, base / "1")
    assert (base / "1" / "model.tflite").read_bytes() == (exported_model / "1" / "model.tflite").read_bytes()
