"""The two architectures. Both take float32 images [N, 28, 28, 1] scaled to [0, 1] and return logits [N, 10]."""

from __future__ import annotations

import keras


def build_cnn(n_classes: int = 10) -> keras.Model:
    """The tutorial network: conv 5x5x16 -> pool -> conv 5x5x36 -> pool -> dense 128 -> dense 10.

    SAME padding keeps 28x28 through the first convolution, so the second pooling leaves 7x7x36 = 1764 values.
    """
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            layers.Conv2D(16, 5, padding="same", activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(36, 5, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(128, activation="relu", name="dense1"),
            layers.Dense(n_classes, name="logits"),
        ],
        name="cnn",
    )


def build_linear(n_classes: int = 10) -> keras.Model:
    """The tutorials' simple linear model: 784 pixels -> 10 logits (weights and biases only)."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(n_classes, name="logits"),
        ],
        name="linear",
    )


def build_model(architecture: str, n_classes: int = 10) -> keras.Model:
    builders = {"cnn": build_cnn, "linear": build_linear}
    return builders[architecture](n_classes)
