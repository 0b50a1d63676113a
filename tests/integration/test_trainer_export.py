"""The real trainer CLI on small synthetic data: what it exports, and how it fails on bad input."""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mnist_trainer.datasets import FASHION_MNIST, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from mnist_trainer.idx import read_idx, write_idx

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METADATA_KEYS = {
    "dataset",
    "model",
    "class_names",
    "hyperparameters",
    "test_accuracy",
    "per_class_accuracy",
    "training_seconds",
    "seed",
    "trainer_version",
    "created",
}


def trainer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnist_trainer", *map(str, args)], capture_output=True, text=True, timeout=300
    )


# Runs in a fresh interpreter that imports nothing but TensorFlow and numpy: proves the export is
# self-contained, and calls it the way the server does.
BARE_TENSORFLOW_CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(sys.argv[1])
    serve = loaded.signatures["serving_default"]
    images = np.load(sys.argv[2])
    out = serve(images=tf.constant(images))
    spec = serve.structured_input_signature[1]["images"]
    print(json.dumps({
        "input": [spec.dtype.name, spec.shape.as_list()],
        "outputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in serve.structured_outputs.items()},
        "classes": out["classes"].numpy().tolist(),
        "probabilities": out["probabilities"].numpy().tolist(),
        "logits": out["logits"].numpy().tolist(),
        "project_code_loaded": any(m.startswith("mnist_") for m in sys.modules),
    }))
""")


def test_export_runs_in_bare_tensorflow_and_has_learned(exported_model, synthetic_data_dir, tmp_path):
    images = read_idx(synthetic_data_dir / TEST_IMAGES)
    labels = read_idx(synthetic_data_dir / TEST_LABELS)
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run(
        [sys.executable, "-c", BARE_TENSORFLOW_CHECK, str(exported_model / "1"), str(tmp_path / "images.npy")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["project_code_loaded"] is False
    assert out["input"] == ["uint8", [None, 28, 28]]
    assert out["outputs"] == {
        "probabilities": ["float32", [None, 10]],
        "classes": ["int64", [None]],
        "logits": ["float32", [None, 10]],
    }
    classes, probabilities, logits = (np.array(out[k]) for k in ("classes", "probabilities", "logits"))
    assert classes.shape == (500,) and probabilities.shape == logits.shape == (500, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(classes, logits.argmax(axis=1))
    accuracy = float(np.mean(classes == labels))
    assert accuracy > 0.8  # chance is 0.1
    metadata = json.loads((exported_model / "1" / "assets.extra" / "metadata.json").read_text())
    assert metadata["test_accuracy"] == pytest.approx(accuracy)


def test_export_layout_labels_and_metadata(exported_model):
    version = exported_model / "1"
    assert sorted(p.name for p in exported_model.iterdir()) == ["1"]  # no staging directory left behind
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert (version / "assets" / "labels.txt").read_text().splitlines() == [str(d) for d in range(10)]
    metadata = json.loads((version / "assets.extra" / "metadata.json").read_text())
    assert METADATA_KEYS <= metadata.keys()
    assert (metadata["dataset"], metadata["model"], metadata["seed"]) == ("mnist", "cnn", 1)
    assert metadata["hyperparameters"]["steps_run"] == 150 and metadata["hyperparameters"]["batch_size"] == 64
    assert sorted(metadata["per_class_accuracy"]) == [str(d) for d in range(10)]
    assert not (version / "report").exists()  # --no-report


def test_second_export_is_version_2_same_seed_same_weights_with_report(model_base_path, synthetic_data_dir):
    # The same flags as the `exported_model` fixture, this time with the report.
    result = trainer(
        "--data-dir",
        synthetic_data_dir,
        "--model-dir",
        model_base_path,
        "--steps",
        150,
        "--batch-size",
        64,
        "--seed",
        1,
        "--log-every",
        50,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in model_base_path.iterdir()) == ["1", "2"]
    assert "step 50/150" in result.stdout and "images/s" in result.stdout and "exported version 2" in result.stdout
    weights = "variables/variables.data-00000-of-00001"
    assert (model_base_path / "1" / weights).read_bytes() == (model_base_path / "2" / weights).read_bytes()
    report = model_base_path / "2" / "report"
    pngs = ["confusion_matrix.png", "misclassified.png", "conv1_filters.png", "conv1_outputs.png", "conv2_outputs.png"]
    for name in pngs:
        data = (report / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name
    metrics = json.loads((report / "metrics.json").read_text())
    assert np.sum(metrics["confusion_matrix"]) == 500
    assert metrics["test_accuracy"] == pytest.approx(np.trace(metrics["confusion_matrix"]) / 500)


def test_skip_if_exists_is_a_no_op(model_base_path, synthetic_data_dir):
    result = trainer("--data-dir", synthetic_data_dir, "--model-dir", model_base_path, "--skip-if-exists")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nothing to do" in result.stdout
    assert sorted(p.name for p in model_base_path.iterdir()) == ["1"]


def test_linear_model_on_fashion_mnist_names(tmp_path, synthetic_data_dir):
    base = tmp_path / "fashion"
    result = trainer(
        "--data-dir",
        synthetic_data_dir,
        "--model-dir",
        base,
        "--dataset",
        "fashion-mnist",
        "--model",
        "linear",
        "--steps",
        200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (base / "1" / "assets" / "labels.txt").read_text().splitlines() == list(FASHION_MNIST.class_names)
    metadata = json.loads((base / "1" / "assets.extra" / "metadata.json").read_text())
    assert (metadata["dataset"], metadata["model"]) == ("fashion-mnist", "linear")
    assert metadata["test_accuracy"] > 0.5
    assert (base / "1" / "report" / "linear_weights.png").read_bytes().startswith(PNG_SIGNATURE)


def _break_truncated(d: Path):
    data = (d / TRAIN_IMAGES).read_bytes()
    (d / TRAIN_IMAGES).write_bytes(data[: len(data) // 3])
    return TRAIN_IMAGES, "truncated"


def _break_magic(d: Path):
    raw = gzip.decompress((d / TEST_LABELS).read_bytes())
    (d / TEST_LABELS).write_bytes(gzip.compress(b"\x00\x00\x08\x03" + raw[4:]))
    return TEST_LABELS, "wrong magic number 0x00000803, expected 0x0000TT01"


def _break_count(d: Path):
    write_idx(d / TRAIN_LABELS, read_idx(d / TRAIN_LABELS)[:-1])
    return TRAIN_LABELS, "has 2999 labels but train-images-idx3-ubyte.gz has 3000 images"


@pytest.mark.parametrize("breaker", [_break_truncated, _break_magic, _break_count])
def test_bad_data_file_one_error_line_nothing_exported(breaker, tmp_path, synthetic_data_dir):
    data = shutil.copytree(synthetic_data_dir, tmp_path / "data")
    name, problem = breaker(data)
    base = tmp_path / "models"
    result = trainer("--data-dir", data, "--model-dir", base, "--steps", 5)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mnist-trainer: error: ") and str(data / name) in last and problem in last
    assert list(base.iterdir()) == []


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_while_training_exports_nothing(tmp_path, synthetic_data_dir, signum, exit_code):
    base = tmp_path / "models"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mnist_trainer",
            "--data-dir",
            str(synthetic_data_dir),
            "--model-dir",
            str(base),
            "--steps",
            "1000000",
            "--log-every",
            "1",
            "--no-report",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    training = False
    try:
        for line in proc.stdout:  # wait until it is really training
            if "step 1/1000000" in line:
                training = True
                break
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert training, f"the trainer ended before its first step: {stderr}"
    assert proc.returncode == exit_code, stderr
    assert stderr.strip().splitlines()[-1] == "mnist-trainer: stopped; nothing was exported"
    assert list(base.iterdir()) == []
