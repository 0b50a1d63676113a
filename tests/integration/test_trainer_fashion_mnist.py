"""About one epoch on the genuine Fashion-MNIST files: the default recipe, the export's metadata and report.

1.5 epochs rather than 1: with flips and label smoothing one epoch lands at 85.5-86.7% (seeds 5, 0, 1), too
close to the bar; 1.5 epochs reach 87.5% with seed 5 for 8 more seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from mnist_trainer.datasets import FASHION_MNIST, TEST_IMAGES, TEST_LABELS
from mnist_trainer.idx import read_idx


@pytest.mark.slow
def test_one_epoch_on_real_fashion_mnist_reaches_85_percent(fashion_mnist_dir, fashion_exported_model):
    version = fashion_exported_model / "1"  # trained by the session fixture (tests/conftest.py), 1.5 epochs
    metadata = json.loads((version / "assets.extra" / "metadata.json").read_text())
    assert metadata["dataset"] == "fashion-mnist"
    assert metadata["class_names"] == [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    assert metadata["image_preparation"] == "fashion-mnist-product"
    assert metadata["examples"] == {"train": 55000, "validation": 5000, "test": 10000}
    assert metadata["hyperparameters"]["flip"] is True
    assert list(metadata["per_class_accuracy"]) == list(FASHION_MNIST.class_names)
    assert (version / "assets" / "labels.txt").read_text().splitlines() == metadata["class_names"]
    for name in ("confusion_matrix.png", "misclassified.png", "conv1_filters.png"):
        assert (version / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Score the export independently of the trainer's own bookkeeping.
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    images, labels = read_idx(fashion_mnist_dir / TEST_IMAGES), read_idx(fashion_mnist_dir / TEST_LABELS)
    classes = np.concatenate(
        [serve(images=tf.constant(images[i : i + 2000]))["classes"].numpy() for i in range(0, len(images), 2000)]
    )
    accuracy = float(np.mean(classes == labels))
    assert accuracy >= 0.85
    assert metadata["test_accuracy"] == pytest.approx(accuracy)
