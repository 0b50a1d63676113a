"""Broken model versions, made the way real ones break (test fixtures, not mocks of our code).

- `export_refusing_model`: a genuine SavedModel, exported here with bare TensorFlow, whose
  `serving_default` has the real interface (uint8 [-1, 28, 28] -> probabilities, classes, logits)
  and wraps the real trained model, but raises at run time (tf.debugging.Assert) on some inputs:
  `refuse="marked"`: any image whose four corner pixels are all 255 (see `MARKED`) fails its whole batch;
  `refuse="blank"`: an all-zero batch fails, which is exactly what warm-up sends.
- `truncate_variables`: a copy whose variables file lost its second half (a disk that filled up).
TensorFlow is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

ASSET_DIRS = ("assets", "assets.extra")


def mark(images: np.ndarray) -> np.ndarray:
    """The images with their four corners set to 255: what a `refuse="marked"` model refuses."""
    marked = images.copy()
    marked[:, [0, 0, -1, -1], [0, -1, 0, -1]] = 255
    return marked


def export_refusing_model(source_version: Path, destination: Path, refuse: str) -> Path:
    """Writes the refusing SavedModel into `destination` (not yet a version directory: rename it in)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(source_version))

    class Refusing(tf.Module):
        def __init__(self):
            super().__init__(name="refusing_mnist")
            self.real_model = loaded  # tracked: its variables are saved with this module
            self.real = loaded.signatures["serving_default"]

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name="images")])
        def serve(self, images):
            if refuse == "marked":
                corners = tf.stack([images[:, 0, 0], images[:, 0, -1], images[:, -1, 0], images[:, -1, -1]], axis=1)
                fine = tf.logical_not(tf.reduce_any(tf.reduce_all(tf.equal(corners, 255), axis=1)))
            else:
                fine = tf.reduce_any(tf.not_equal(images, 0))
            check = tf.debugging.Assert(fine, [f"refusing model: this batch has a {refuse} image"])
            with tf.control_dependencies([check]):
                outputs = self.real(images=images)
            return {name: tf.identity(value) for name, value in outputs.items()}

    module = Refusing()
    tf.saved_model.save(module, str(destination), signatures={"serving_default": module.serve})
    for name in ASSET_DIRS:  # labels and metadata, as the trainer writes them
        if (source_version / name).is_dir():
            shutil.copytree(source_version / name, destination / name, dirs_exist_ok=True)
    return destination


def truncate_variables(version_dir: Path) -> None:
    """Cuts every variables data shard to half its size, in place."""
    shards = sorted((version_dir / "variables").glob("variables.data-*"))
    assert shards, f"no variables data under {version_dir}"
    for shard in shards:
        data = shard.read_bytes()
        shard.write_bytes(data[: len(data) // 2])
