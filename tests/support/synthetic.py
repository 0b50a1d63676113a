"""Small learnable MNIST-style IDX files for tests: each class is a distinct stroke pattern.

Every image is drawn with its own jitter (position, size, stroke width, brightness) plus noise, so a model
must learn the shape, not memorise one picture. The files have MNIST's names and format, written with the
trainer's own IDX writer; pass `--dataset fashion-mnist` to the trainer to get clothing class names on the
same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_trainer.datasets import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from mnist_trainer.idx import write_idx

_GRID = np.mgrid[0:28, 0:28].astype(np.float32)  # [2, 28, 28]: row, column


def _stroke(distance: np.ndarray, width: float) -> np.ndarray:
    """Ink intensity in [0, 1] for pixels `distance` away from the centre line of a stroke."""
    return np.clip(1.0 - np.abs(distance) / width, 0.0, 1.0)


def _draw(label: int, rng: np.random.Generator) -> np.ndarray:
    cy, cx = 14 + rng.uniform(-3, 3, 2)
    size = rng.uniform(6, 9)
    width = rng.uniform(1.2, 2.2)
    y, x = _GRID[0] - cy, _GRID[1] - cx
    inside = (np.abs(y) <= size) & (np.abs(x) <= size)
    diagonal_down = lambda: _stroke((y - x) / np.sqrt(2), width)  # noqa: E731
    diagonal_up = lambda: _stroke((y + x) / np.sqrt(2), width)  # noqa: E731
    shapes = {  # each class: a distinct shape around (cy, cx); only the one drawn is computed
        0: lambda: _stroke(np.hypot(y, x) - size, width),  # ring
        1: lambda: _stroke(x, width) * inside,  # |
        2: lambda: _stroke(y, width) * inside,  # -
        3: lambda: diagonal_down() * inside,  # \
        4: lambda: diagonal_up() * inside,  # /
        5: lambda: np.maximum(_stroke(x, width), _stroke(y, width)) * inside,  # +
        6: lambda: ((np.abs(y) <= size * 0.6) & (np.abs(x) <= size * 0.6)).astype(np.float32),  # filled square
        7: lambda: np.maximum(diagonal_down(), diagonal_up()) * inside,  # x
        8: lambda: np.maximum(_stroke(y - size / 2, width), _stroke(y + size / 2, width)) * inside,  # =
        9: lambda: np.maximum(_stroke(x - size / 2, width), _stroke(x + size / 2, width)) * inside,  # ||
    }
    bar = shapes[label]()
    image = bar * rng.uniform(160, 255) + rng.normal(0, 25, (28, 28))
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = np.stack([_draw(int(label), rng) for label in labels]) if n else np.zeros((0, 28, 28), np.uint8)
    return images, labels


def write_synthetic_mnist(directory: Path, n_train: int = 3000, n_test: int = 500, seed: int = 0) -> Path:
    """Writes the four MNIST .gz files (train and t10k, images and labels) into `directory`; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = synthetic_arrays(n_train, seed)
    test_images, test_labels = synthetic_arrays(n_test, seed + 1_000_003)
    write_idx(directory / TRAIN_IMAGES, train_images)
    write_idx(directory / TRAIN_LABELS, train_labels)
    write_idx(directory / TEST_IMAGES, test_images)
    write_idx(directory / TEST_LABELS, test_labels)
    return directory
