"""About one epoch on the genuine MNIST files: the real network, the real data, the real accuracy bar."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mnist_trainer.datasets import TEST_IMAGES, TEST_LABELS
from mnist_trainer.idx import read_idx


@pytest.mark.slow
@pytest.mark.real_mnist
def test_one_epoch_on_real_mnist_reaches_97_percent(mnist_dir, tmp_path):
    base = tmp_path / "mnist"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_trainer",
            "--data-dir",
            str(mnist_dir),
            "--model-dir",
            str(base),
            "--epochs",
            "1",
            "--seed",
            "5",
            "--no-report",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = json.loads((base / "1" / "assets.extra" / "metadata.json").read_text())
    assert metadata["examples"] == {"train": 55000, "validation": 5000, "test": 10000}

    # Score the export independently of the trainer's own bookkeeping.
    serve = tf.saved_model.load(str(base / "1")).signatures["serving_default"]
    images, labels = read_idx(mnist_dir / TEST_IMAGES), read_idx(mnist_dir / TEST_LABELS)
    classes = np.concatenate(
        [serve(images=tf.constant(images[i : i + 2000]))["classes"].numpy() for i in range(0, len(images), 2000)]
    )
    accuracy = float(np.mean(classes == labels))
    assert accuracy >= 0.97
    assert metadata["test_accuracy"] == pytest.approx(accuracy)
