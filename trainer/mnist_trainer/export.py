"""The servable: a SavedModel whose `serving_default` signature takes raw uint8 images.

Scaling happens inside the graph, so any client (or TensorFlow Serving itself) can send the pixels as they
are, and the SavedModel needs no project code to load.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mnist_serving.layout import LABELS_FILE, METADATA_FILE

from .training import to_model_input

SIGNATURE = "serving_default"
INPUT_NAME = "images"
_BATCH = 1000


class _Servable(tf.Module):
    def __init__(self, model: keras.Model):
        super().__init__(name="mnist_servable")
        self.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name=INPUT_NAME)])
    def serve(self, images):
        logits = self.model(to_model_input(images), training=False)
        return {
            "probabilities": tf.nn.softmax(logits),
            "classes": tf.argmax(logits, axis=1, output_type=tf.int64),
            "logits": logits,
        }


def write_saved_model(model: keras.Model, directory: Path, class_names: tuple[str, ...]) -> None:
    """SavedModel files plus assets/labels.txt (one class name per line, in class-index order)."""
    servable = _Servable(model)
    tf.saved_model.save(servable, str(directory), signatures={SIGNATURE: servable.serve})
    labels = directory / LABELS_FILE
    labels.parent.mkdir(exist_ok=True)
    labels.write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")


def predict_with_export(directory: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Runs the exported signature exactly as a server would (bare tf.saved_model.load), in batches."""
    serve = tf.saved_model.load(str(directory)).signatures[SIGNATURE]
    parts = [serve(**{INPUT_NAME: tf.constant(images[i : i + _BATCH])}) for i in range(0, len(images), _BATCH)]
    return {key: np.concatenate([p[key].numpy() for p in parts]) for key in parts[0]}


def write_metadata(directory: Path, metadata: dict) -> None:
    path = directory / METADATA_FILE
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
