"""One trainer run, start to finish: data, model, training, export, report."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from mnist_serving.layout import CLASS_NAMES_FIELD, IMAGE_PREPARATION_FIELD, TFLITE_FIELD

from . import __version__
from .datasets import DATASETS, load_splits
from .download import ensure_files
from .publish import existing_versions, prepare_base, publish
from .recipes import resolve_recipe
from .settings import Settings

log = logging.getLogger("mnist_trainer")


def run(settings: Settings) -> int:
    spec = DATASETS[settings.dataset]
    versions = existing_versions(settings.model_dir)
    if settings.skip_if_exists and versions:
        log.info("%s already holds version %d; --skip-if-exists: nothing to do", settings.model_dir, versions[-1])
        return 0
    # Everything that can fail cheaply fails before TensorFlow is even imported.
    prepare_base(settings.model_dir)
    ensure_files(settings.data_dir, spec, settings.mirrors)
    splits = load_splits(settings.data_dir, spec)
    log.info(
        "%s from %s: %d train, %d validation, %d test images",
        spec.name,
        settings.data_dir,
        len(splits.train),
        len(splits.validation),
        len(splits.test),
    )
    recipe = resolve_recipe(
        settings.recipe,
        settings.model,
        spec.name,
        epochs=settings.epochs,
        steps=settings.steps,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
    )

    import keras
    import tensorflow as tf

    from .export import predict_with_export, write_metadata, write_saved_model
    from .models import build_model
    from .report import confusion_matrix, per_class_accuracy, write_report
    from .tflite import write_tflite
    from .training import train

    tf.config.threading.set_intra_op_parallelism_threads(settings.threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, settings.threads))
    keras.utils.set_random_seed(settings.seed)
    model = build_model(settings.model, len(spec.class_names))
    started = time.perf_counter()
    result = train(model, splits, recipe, settings.seed, settings.log_every)
    summary = {}

    def write_version(staging):
        write_saved_model(model, staging, spec.class_names)
        # Test accuracy is measured on the exported signature itself: what the server will run.
        reference = predict_with_export(staging, splits.test.images)
        predicted = reference["classes"]
        matrix = confusion_matrix(splits.test.labels, predicted, len(spec.class_names))
        test_accuracy = float(matrix.trace() / matrix.sum())
        # Raises ExportError unless model.tflite answers as the SavedModel did: then nothing is published.
        tflite = write_tflite(staging, splits.test.images, reference, settings.threads)
        log.info(
            "%s: %.0f kB, same classes as the SavedModel on all %d test images, probabilities within "
            "%.1g (converted in %.1f s, verified in %.1f s)",
            tflite["file"],
            tflite["bytes"] / 1000,
            tflite["verified_images"],
            tflite["max_abs_probability_difference"],
            tflite["convert_seconds"],
            tflite["verify_seconds"],
        )
        metadata = {
            "dataset": spec.name,
            "model": settings.model,
            CLASS_NAMES_FIELD: list(spec.class_names),
            # How the server turns a PNG/JPEG into the 28x28 input this model expects (docs/fashion-mnist.md).
            IMAGE_PREPARATION_FIELD: spec.image_preparation,
            "hyperparameters": {
                "recipe": settings.recipe,
                **recipe.as_dict(),
                "steps_run": result.steps,
                "epochs_run": result.epochs,
                "best_step": result.best_step,
            },
            "test_accuracy": test_accuracy,
            "validation_accuracy": result.best_validation_accuracy,
            "per_class_accuracy": dict(zip(spec.class_names, per_class_accuracy(matrix).tolist())),
            "examples": {"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)},
            "training_seconds": round(result.training_seconds, 2),
            "images_per_second": round(result.images_per_second, 1),
            "seed": settings.seed,
            "trainer_version": __version__,
            "tensorflow_version": tf.__version__,
            "signature": {
                "name": "serving_default",
                "inputs": {"images": "uint8 [-1, 28, 28]"},
                "outputs": {"probabilities": "float32 [-1, 10]", "classes": "int64 [-1]", "logits": "float32 [-1, 10]"},
            },
            TFLITE_FIELD: tflite,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_metadata(staging, metadata)
        if settings.report:
            write_report(
                staging / "report",
                model,
                splits.test.images,
                splits.test.labels,
                predicted,
                spec.class_names,
                {**metadata, "history": result.history},
            )
        summary["test_accuracy"] = test_accuracy

    version, path = publish(settings.model_dir, write_version)
    log.info(
        "exported version %d to %s: test accuracy %.2f%% (%.0f s in all)",
        version,
        path,
        100 * summary["test_accuracy"],
        time.perf_counter() - started,
    )
    return 0
