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


def make_optimizer(recipe: Recipe, total_steps: int) -> keras.optimizers.Optimizer:
    learning_rate = recipe.learning_rate
    if recipe.schedule == "warmup-cosine":
        warmup = int(total_steps * recipe.warmup_fraction)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0, decay_steps=max(1, total_steps - warmup),
            warmup_target=recipe.learning_rate, warmup_steps=warmup)
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate)
    return keras.optimizers.Adam(learning_rate)


class Predictor:
    """Logits for uint8 images, in batches, through one traced function (no retracing per call)."""

    def __init__(self, model: keras.Model):
        self._run = tf.function(lambda x: model(to_model_input(x), training=False), input_signature=[_IMAGES])

    def logits(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate([self._run(images[i:i + EVAL_BATCH]).numpy()
                               for i in range(0, len(images), EVAL_BATCH)])

    def accuracy(self, split: Split) -> float:
        return float(np.mean(self.logits(split.images).argmax(axis=1) == split.labels))


def train(model: keras.Model, splits: Splits, recipe: Recipe, seed: int, log_every: int = 100) -> TrainResult:
    rng = np.random.default_rng(seed)
    n_train, batch = len(splits.train), recipe.batch_size
    steps_per_epoch = math.ceil(n_train / batch)
    total_steps = recipe.steps or max(1, round(recipe.epochs * steps_per_epoch))
    optimizer = make_optimizer(recipe, total_steps)
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

    log.info("training %s for %d steps (%.1f epochs of %d images, batch %d), recipe %s",
             model.name, total_steps, total_steps / steps_per_epoch, n_train, batch, recipe.as_dict())
    result = TrainResult(0, 0.0, 0, -1.0, 0.0, 0.0)
    best_weights = None
    started = time.perf_counter()
    step_seconds, images_seen = 0.0, 0
    window = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    step = 0
    while step < total_steps:
        order = rng.permutation(n_train)
        images = shift_images(splits.train.images[order], recipe.shift_pixels, rng)
        labels = splits.train.labels[order]
        for start in range(0, n_train, batch):
            t0 = time.perf_counter()
            loss, correct = train_step(images[start:start + batch], labels[start:start + batch])
            loss = float(loss)
            elapsed = time.perf_counter() - t0
            step += 1
            step_seconds += elapsed
            seen = min(batch, n_train - start)
            images_seen += seen
            window["loss"] += loss * seen
            window["correct"] += int(correct)
            window["seen"] += seen
            window["seconds"] += elapsed
            if not math.isfinite(loss):
                raise TrainingDivergedError(f"loss became {loss} at step {step}; try a lower --learning-rate")
            if step % log_every == 0 or step == total_steps:
                log.info("step %d/%d  epoch %.2f  loss %.4f  train acc %.2f%%  lr %.2e  %.0f images/s",
                         step, total_steps, step / steps_per_epoch, window["loss"] / window["seen"],
                         100 * window["correct"] / window["seen"], _current_lr(optimizer),
                         window["seen"] / max(window["seconds"], 1e-9))
                window = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            if step == total_steps:
                break
        validation = predictor.accuracy(splits.validation)
        is_best = validation > result.best_validation_accuracy
        if is_best:
            best_weights = [w.numpy() for w in model.weights]
            result.best_step, result.best_validation_accuracy = step, validation
        result.history.append({"step": step, "epoch": round(step / steps_per_epoch, 3),
                               "validation_accuracy": validation,
                               "seconds": round(time.perf_counter() - started, 2)})
        log.info("epoch %.2f: validation accuracy %.2f%%%s", step / steps_per_epoch, 100 * validation,
                 " (best so far)" if is_best else "")
    model.set_weights(best_weights)
    result.steps, result.epochs = step, round(step / steps_per_epoch, 3)
    result.training_seconds = time.perf_counter() - started
    result.images_per_second = images_seen / max(step_seconds, 1e-9)
    log.info("kept the weights of step %d (validation accuracy %.2f%%); %.1f s, %.0f images/s",
             result.best_step, 100 * result.best_validation_accuracy, result.training_seconds,
             result.images_per_second)
    return result


def _current_lr(optimizer: keras.optimizers.Optimizer) -> float:
    return float(optimizer.learning_rate)
