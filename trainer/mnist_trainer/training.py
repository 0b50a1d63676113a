"""The training loop: seeded shuffling and augmentation in numpy, one compiled train step, progress lines,
validation after every epoch, and the weights of the best validation accuracy kept."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from .datasets import Split, Splits
from .errors import TrainingDivergedError
from .recipes import Recipe

log = logging.getLogger(__name__)

EVAL_BATCH = 1000
_IMAGES = tf.TensorSpec([None, 28, 28], tf.uint8, name="images")
_LABELS = tf.TensorSpec([None], tf.uint8, name="labels")


@dataclass
class TrainResult:
    steps: int
    epochs: float
    best_step: int
    best_validation_accuracy: float
    training_seconds: float  # wall time of the whole loop, validation included
    images_per_second: float  # training throughput, train steps only
    history: list[dict] = field(default_factory=list)  # one entry per validation


def to_model_input(images: tf.Tensor) -> tf.Tensor:
    """uint8 [N, 28, 28] -> float32 [N, 28, 28, 1] in [0, 1]: the same scaling the exported graph applies."""
    return tf.expand_dims(tf.cast(images, tf.float32) / 255.0, -1)


def shift_images(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Moves every image by its own random whole-pixel offset in [-max_shift, max_shift] (zeros fill in)."""
    if max_shift <= 0:
        return images
    n, h, w = images.shape
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    rows = rng.integers(0, 2 * max_shift + 1, n)[:, None] + np.arange(h)
    cols = rng.integers(0, 2 * max_shift + 1, n)[:, None] + np.arange(w)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def flip_images(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirrors a random half of the images left-right (a copy; the input is left as it is)."""
    flipped = images.copy()
    chosen = rng.random(len(images)) < 0.5
    flipped[chosen] = images[chosen, :, ::-1]
    return flipped


def make_optimizer(recipe: Recipe, total_steps: int) -> keras.optimizers.Optimizer:
    learning_rate = recipe.learning_rate
    if recipe.schedule == "warmup-cosine":
        warmup = int(total_steps * recipe.warmup_fraction)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=max(1, total_steps - warmup),
            warmup_target=recipe.learning_rate,
            warmup_steps=warmup,
        )
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate)
    return keras.optimizers.Adam(learning_rate)


class Predictor:
    """Logits for uint8 images, in batches, through one traced function (no retracing per call)."""

    def __init__(self, model: keras.Model):
        self._run = tf.function(lambda x: model(to_model_input(x), training=False), input_signature=[_IMAGES])

    def logits(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [self._run(images[i : i + EVAL_BATCH]).numpy() for i in range(0, len(images), EVAL_BATCH)]
        )

    def accuracy(self, split: Split) -> float:
        return float(np.mean(self.logits(split.images).argmax(axis=1) == split.labels))


@dataclass
class _Window:
    """Training loss, accuracy and throughput since the last progress line."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0

    def add(self, loss: float, correct: int, seen: int, seconds: float) -> None:
        self.loss_sum += loss * seen
        self.correct += correct
        self.seen += seen
        self.seconds += seconds

    def summary(self) -> str:
        return (
            f"loss {self.loss_sum / self.seen:.4f}  train acc {100 * self.correct / self.seen:.2f}%  "
            f"{self.seen / max(self.seconds, 1e-9):.0f} images/s"
        )


def _epochs(train_split: Split, batch: int, recipe: Recipe, rng: np.random.Generator):
    """Endless epochs, each a list of batches of a fresh shuffle (and random shift, flip) of the training split."""
    while True:
        order = rng.permutation(len(train_split))
        images = shift_images(train_split.images[order], recipe.shift_pixels, rng)
        if recipe.flip:
            images = flip_images(images, rng)
        labels = train_split.labels[order]
        yield [(images[i : i + batch], labels[i : i + batch]) for i in range(0, len(labels), batch)]


def train(model: keras.Model, splits: Splits, recipe: Recipe, seed: int, log_every: int = 100) -> TrainResult:
    n_train, batch = len(splits.train), recipe.batch_size
    steps_per_epoch = math.ceil(n_train / batch)
    total_steps = recipe.steps or max(1, round(recipe.epochs * steps_per_epoch))
    optimizer = make_optimizer(recipe, total_steps)
    n_classes = model.output_shape[-1]
    if recipe.label_smoothing:
        smoothed = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing)

        def loss_fn(labels, logits):
            return smoothed(tf.one_hot(tf.cast(labels, tf.int32), n_classes), logits)
    else:
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    predictor = Predictor(model)

    @tf.function(input_signature=[_IMAGES, _LABELS])
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(to_model_input(images), training=True)
            loss = loss_fn(labels, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, 1) == tf.cast(labels, tf.int64), tf.int32))
        return loss, correct

    log.info(
        "training %s for %d steps (%.1f epochs of %d images, batch %d), recipe %s",
        model.name,
        total_steps,
        total_steps / steps_per_epoch,
        n_train,
        batch,
        recipe.as_dict(),
    )
    result = TrainResult(
        steps=0, epochs=0.0, best_step=0, best_validation_accuracy=-1.0, training_seconds=0.0, images_per_second=0.0
    )
    best_weights = None
    started = time.perf_counter()
    step, total, window = 0, _Window(), _Window()
    for batches in _epochs(splits.train, batch, recipe, np.random.default_rng(seed)):
        for images, labels in batches[: total_steps - step]:
            t0 = time.perf_counter()
            loss, correct = train_step(images, labels)
            loss, correct, elapsed = float(loss), int(correct), time.perf_counter() - t0
            step += 1
            total.add(loss, correct, len(labels), elapsed)
            window.add(loss, correct, len(labels), elapsed)
            if not math.isfinite(loss):
                raise TrainingDivergedError(f"loss became {loss} at step {step}; try a lower --learning-rate")
            if step % log_every == 0 or step == total_steps:
                log.info(
                    "step %d/%d  epoch %.2f  %s  lr %.2e",
                    step,
                    total_steps,
                    step / steps_per_epoch,
                    window.summary(),
                    float(optimizer.learning_rate),
                )
                window = _Window()
        validation = predictor.accuracy(splits.validation)
        is_best = validation > result.best_validation_accuracy
        if is_best:
            best_weights = [w.numpy() for w in model.weights]
            result.best_step, result.best_validation_accuracy = step, validation
        result.history.append(
            {
                "step": step,
                "epoch": round(step / steps_per_epoch, 3),
                "validation_accuracy": validation,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
        log.info(
            "epoch %.2f: validation accuracy %.2f%%%s",
            step / steps_per_epoch,
            100 * validation,
            " (best so far)" if is_best else "",
        )
        if step == total_steps:
            break
    model.set_weights(best_weights)
    result.steps, result.epochs = step, round(step / steps_per_epoch, 3)
    result.training_seconds = time.perf_counter() - started
    result.images_per_second = total.seen / max(total.seconds, 1e-9)
    log.info(
        "kept the weights of step %d (validation accuracy %.2f%%); %.1f s, %.0f images/s",
        result.best_step,
        100 * result.best_validation_accuracy,
        result.training_seconds,
        result.images_per_second,
    )
    return result
