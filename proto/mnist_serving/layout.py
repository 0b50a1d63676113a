"""The model volume's layout, TensorFlow Serving's: the one definition the trainer writes and the server reads.

    <base path>/                      one model (--model-dir, --model NAME=PATH)
      1/  saved_model.pb  variables/  model.tflite  assets/labels.txt  assets.extra/metadata.json
      2/  ...
      .tmp-<random>/                  being written (the trainer renames it to the next number when complete)

A version is a directory whose name is a positive integer; dot-directories and other names are not
versions. A version is complete once its saved_model.pb (or .pbtxt) is there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

VERSION_NAME = re.compile(r"^[0-9]{1,18}$")  # an int64 without overflow
STAGING_PREFIX = ".tmp-"  # versions are written under this dot-prefix, then renamed into place
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
TFLITE_FILE = "model.tflite"  # the name TF Serving's --prefer_tflite_model reads
LABELS_FILE = Path("assets") / "labels.txt"  # one class name per line, in class-index order
METADATA_FILE = Path("assets.extra") / "metadata.json"

# metadata.json fields the server reads (the trainer writes more: figures, hyperparameters, ...)
CLASS_NAMES_FIELD = "class_names"
IMAGE_PREPARATION_FIELD = "image_preparation"  # a key of mnist_serving.images.PREPARATIONS
TFLITE_FIELD = "tflite"  # the proof that model.tflite answers as the SavedModel: its size, sha256, ...


def version_number(name: str) -> int | None:
    """The version a directory name stands for, or None when it is not a version's name."""
    if not VERSION_NAME.match(name):
        return None
    number = int(name)
    return number if number > 0 else None


def version_dirs(base: Path) -> dict[int, Path]:
    """Every version directory under `base`, complete or not (raises OSError when it cannot be listed)."""
    versions = {}
    with os.scandir(base) as entries:
        for entry in entries:
            number = version_number(entry.name)
            if number is not None and entry.is_dir():
                versions[number] = Path(entry.path)
    return versions


def is_complete(version_dir: Path) -> bool:
    return any((version_dir / name).is_file() for name in SAVED_MODEL_FILES)
