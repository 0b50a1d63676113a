"""The pictures the tutorials show, as PNG files next to the export, plus metrics.json.

confusion_matrix.png, misclassified.png (3x3 test errors), and for the CNN conv1_filters.png (blue negative,
red positive), conv1_outputs.png and conv2_outputs.png (one test image through the conv layers); for the
linear model linear_weights.png instead of the conv plots.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 100


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    return np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)


def write_report(
    directory: Path,
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    class_names: tuple[str, ...],
    metrics: dict,
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    matrix = confusion_matrix(labels, predicted, len(class_names))
    written = [
        _plot_confusion(directory / "confusion_matrix.png", matrix, class_names),
        _plot_errors(directory / "misclassified.png", images, labels, predicted, class_names),
    ]
    names = {layer.name for layer in model.layers}
    if {"conv1", "conv2"} <= names:
        written.append(_plot_filters(directory / "conv1_filters.png", model.get_layer("conv1").kernel.numpy()))
        written += _plot_conv_outputs(directory, model, images[0], class_names[labels[0]])
    else:
        written.append(
            _plot_linear_weights(
                directory / "linear_weights.png", model.get_layer("logits").kernel.numpy(), class_names
            )
        )
    metrics_path = directory / "metrics.json"
    metrics_path.write_text(
        json.dumps({**metrics, "confusion_matrix": matrix.tolist()}, indent=2) + "\n", encoding="utf-8"
    )
    return [*written, metrics_path]


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _plot_confusion(path: Path, matrix: np.ndarray, class_names: tuple[str, ...]) -> Path:
    fig, ax = plt.subplots(figsize=(7, 6))
    shown = ax.imshow(matrix, cmap="Blues", norm=matplotlib.colors.LogNorm(vmin=1, vmax=max(matrix.max(), 2)))
    fig.colorbar(shown, ax=ax, label="test images (log scale)")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45 if max(map(len, class_names)) > 2 else 0, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            ax.text(
                col,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if count > threshold else "black",
            )
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"Confusion matrix: {100 * accuracy:.2f}% of {matrix.sum()} test images correct")
    return _save(fig, path)


def _plot_errors(path: Path, images, labels, predicted, class_names) -> Path:
    wrong = np.flatnonzero(labels != predicted)[:9]
    fig, axes = plt.subplots(3, 3, figsize=(6, 6.6))
    for ax, index in zip(axes.flat, [*wrong, *[None] * 9]):
        ax.set_axis_off()
        if index is not None:
            ax.imshow(images[index], cmap="binary")
            ax.set_title(f"true {class_names[labels[index]]}\npredicted {class_names[predicted[index]]}", fontsize=9)
    fig.suptitle(
        f"Misclassified test images ({np.count_nonzero(labels != predicted)} in all)"
        if len(wrong)
        else "No misclassified test images"
    )
    return _save(fig, path)


def _grid(count: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols


def _plot_filters(path: Path, kernel: np.ndarray) -> Path:
    """kernel [5, 5, 1, filters]; one symmetric colour scale so 0 is white, negative blue, positive red."""
    weights = kernel[:, :, 0, :]
    limit = np.abs(weights).max()
    rows, cols = _grid(weights.shape[-1])
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.4 * rows + 0.5))
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < weights.shape[-1]:
            ax.imshow(weights[:, :, i], cmap="seismic", vmin=-limit, vmax=limit, interpolation="nearest")
    fig.suptitle("First conv layer: 5x5 filters (blue negative, red positive)")
    return _save(fig, path)


def _plot_conv_outputs(directory: Path, model: keras.Model, image: np.ndarray, label: str) -> list[Path]:
    # inputs[0], not the list: called with one array, a list-input probe warns about the inputs' structure
    probe = keras.Model(model.inputs[0], [model.get_layer("conv1").output, model.get_layer("conv2").output])
    outputs = probe(image[None, :, :, None].astype(np.float32) / 255.0)
    paths = []
    for name, activation in zip(("conv1", "conv2"), outputs):
        channels = np.asarray(activation)[0]
        rows, cols = _grid(channels.shape[-1] + 1)
        fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.5))
        for i, ax in enumerate(axes.flat):
            ax.set_axis_off()
            if i == 0:
                ax.imshow(image, cmap="binary")
                ax.set_title(f"input: {label}", fontsize=8)
            elif i <= channels.shape[-1]:
                ax.imshow(channels[:, :, i - 1], cmap="binary", interpolation="nearest")
        fig.suptitle(f"{name} outputs ({channels.shape[-1]} channels, after ReLU) for the first test image")
        paths.append(_save(fig, directory / f"{name}_outputs.png"))
    return paths


def _plot_linear_weights(path: Path, kernel: np.ndarray, class_names) -> Path:
    """kernel [784, classes]: the tutorial's picture of what each class's weights respond to."""
    limit = np.abs(kernel).max()
    fig, axes = plt.subplots(2, 5, figsize=(10, 4.6))
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        ax.imshow(kernel[:, i].reshape(28, 28), cmap="seismic", vmin=-limit, vmax=limit)
        ax.set_title(class_names[i], fontsize=9)
    fig.suptitle("Linear model weights per class (blue negative, red positive)")
    return _save(fig, path)
