"""The trainer's pieces that need no training: flags, recipes, augmentation, metrics, data-dir default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_trainer.cli import parse_settings
from mnist_trainer.datasets import default_data_dir
from mnist_trainer.recipes import resolve_recipe
from mnist_trainer.report import confusion_matrix, per_class_accuracy
from mnist_trainer.training import shift_images


def test_flags_map_onto_settings(tmp_path):
    s = parse_settings(
        [
            "--data-dir",
            str(tmp_path),
            "--model-dir",
            "/m",
            "--dataset",
            "fashion-mnist",
            "--model",
            "linear",
            "--recipe",
            "tutorial",
            "--epochs",
            "2.5",
            "--batch-size",
            "32",
            "--learning-rate",
            "0.01",
            "--seed",
            "7",
            "--skip-if-exists",
            "--no-report",
            "--mirror",
            "http://127.0.0.1:1/a/",
            "--mirror",
            "http://127.0.0.1:1/b/",
        ]
    )
    assert (s.data_dir, s.model_dir, s.dataset, s.model, s.recipe) == (
        tmp_path,
        Path("/m"),
        "fashion-mnist",
        "linear",
        "tutorial",
    )
    assert (s.epochs, s.steps, s.batch_size, s.learning_rate, s.seed) == (2.5, None, 32, 0.01, 7)
    assert s.skip_if_exists and not s.report
    assert s.mirrors == ("http://127.0.0.1:1/a/", "http://127.0.0.1:1/b/")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "10", "--epochs", "1"], "not allowed with argument"),
        (["--steps", "0"], "must be greater than 0"),
        (["--batch-size", "ten"], "expected a int"),
        (["--learning-rate", "-1"], "must be greater than 0"),
        (["--model", "resnet"], "invalid choice"),
        ([], "--model-dir"),
    ],
)
def test_bad_flags_exit_2_with_a_message(argv, message, capsys):
    base = [] if not argv else ["--model-dir", "/m"]
    with pytest.raises(SystemExit) as info:
        parse_settings(base + argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_data_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("FASHION_MNIST_DATA_DIR", raising=False)
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path))
    assert default_data_dir("mnist") == tmp_path
    # Same file names, different classes: MNIST's directory must not be reused for Fashion-MNIST.
    assert default_data_dir("fashion-mnist") == Path.home() / ".cache" / "mnist-serving" / "fashion-mnist"
    monkeypatch.delenv("MNIST_DATA_DIR")
    assert default_data_dir("mnist") == Path.home() / ".cache" / "mnist-serving" / "mnist"


def test_tutorial_recipes_are_the_tutorials_settings():
    cnn = resolve_recipe("tutorial", "cnn")
    assert (cnn.optimizer, cnn.learning_rate, cnn.batch_size, cnn.steps) == ("adam", 1e-4, 64, 10_000)
    assert cnn.schedule == "constant" and cnn.shift_pixels == 0
    linear = resolve_recipe("tutorial", "linear")
    assert (linear.optimizer, linear.learning_rate, linear.batch_size, linear.steps) == ("sgd", 0.5, 100, 1_000)


def test_flags_override_the_recipe():
    recipe = resolve_recipe("default", "cnn", steps=150, batch_size=64, learning_rate=0.01)
    assert (recipe.steps, recipe.epochs, recipe.batch_size, recipe.learning_rate) == (150, None, 64, 0.01)
    assert resolve_recipe("tutorial", "cnn", epochs=2).steps is None


def test_shift_moves_each_image_by_at_most_the_limit():
    rng = np.random.default_rng(0)
    images = np.zeros((200, 28, 28), np.uint8)
    images[:, 14, 14] = 255  # one bright pixel in the middle
    shifted = shift_images(images, 2, rng)
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    rows, cols = np.nonzero(shifted.reshape(200, 28, 28).max(axis=0))
    assert rows.min() == 12 and rows.max() == 16 and cols.min() == 12 and cols.max() == 16
    assert np.all(shifted.reshape(200, -1).sum(axis=1) == 255)  # nothing lost, nothing duplicated
    assert shift_images(images, 0, rng) is images


def test_confusion_matrix_rows_are_true_classes():
    labels = np.array([0, 0, 1, 2, 2, 2], np.uint8)
    predicted = np.array([0, 1, 1, 2, 2, 0], np.int64)
    matrix = confusion_matrix(labels, predicted, 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_allclose(per_class_accuracy(matrix), [0.5, 1.0, 2 / 3])
