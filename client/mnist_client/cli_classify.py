"""`mnist-client classify`: every good file answered, every bad one named with the reason, and
answers that mean nothing (blank images) flagged.

The rule for blank: an image whose pixels are all equal once prepared for the model (no ink: the
model still answers a label, but it is noise). Files are prepared here as the server prepares
them (the model's `image_preparation`); IDX images are sent as they are.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from mnist_client.client import MnistClient
from mnist_client.errors import ClientError
from mnist_client.results import Prediction
from mnist_serving.idx import IdxError, read_idx
from mnist_serving.images import DEFAULT_PREPARATION, PREPARATIONS, ImageDecodeError, decode_image

EXIT_OK, EXIT_FAILED = 0, 1
BLANK_NOTE = "blank image: the answer means nothing"


def classify_files(client: MnistClient, files: list[Path], *, version: int, as_json: bool) -> int:
    """One answer per readable, decodable file; the others reported by name. Exit 1 if any failed."""
    contents: dict[int, bytes] = {}
    errors: dict[int, str] = {}
    for index, path in enumerate(files):
        try:
            contents[index] = path.read_bytes()
        except OSError as error:
            errors[index] = f"cannot read: {error.strerror}"
    answers = _answers(client, contents, errors, version)
    blank = _blank_files(client, contents, answers, version)
    if as_json:
        print(
            json.dumps(
                [
                    {"file": str(path), "error": errors[i]}
                    if i in errors
                    else {"file": str(path), **asdict(answers[i]), "blank": i in blank}
                    for i, path in enumerate(files)
                ]
            )
        )
    for index, path in enumerate(files):
        if index in errors:
            print(f"error: {path}: {errors[index]}", file=sys.stderr)
            continue
        if not as_json:
            print(f"{path}\t{_columns(answers[index])}")
        if index in blank:
            print(f"note: {path}: {BLANK_NOTE}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


def _answers(
    client: MnistClient, contents: dict[int, bytes], errors: dict[int, str], version: int
) -> dict[int, Prediction]:
    """All files in one go; when the server rejects the input, each file alone, to tell which."""
    indices = list(contents)
    if not indices:
        return {}
    try:
        return dict(zip(indices, client.classify([contents[i] for i in indices], version=version)))
    except ClientError as error:
        if error.code is not grpc.StatusCode.INVALID_ARGUMENT:
            raise  # the server or the connection failed, not a file
    answers = {}
    for index in indices:
        try:
            [answers[index]] = client.classify(contents[index], version=version)
        except ClientError as error:
            if error.code is not grpc.StatusCode.INVALID_ARGUMENT:
                raise
            errors[index] = error.details.removeprefix("image 0: ")
    return answers


def _blank_files(
    client: MnistClient, contents: dict[int, bytes], answers: dict[int, Prediction], version: int
) -> set[int]:
    if not answers:
        return set()
    name = client.model_info(version=version).metadata.get("image_preparation", DEFAULT_PREPARATION)
    if name not in PREPARATIONS:  # a preparation newer than this client: cannot tell
        return set()
    blank = set()
    for index in answers:
        try:
            if is_blank(decode_image(contents[index], preparation=name)):
                blank.add(index)
        except ImageDecodeError:
            pass  # the server could decode it: not ours to judge
    return blank


def is_blank(pixels: np.ndarray) -> bool:
    """No ink: every pixel the same."""
    return bool(pixels.size) and int(pixels.min()) == int(pixels.max())


def classify_idx(
    client: MnistClient, idx: Path, labels_path: Path | None, count: int | None, *, version: int, as_json: bool
) -> int:
    try:
        images = read_idx(idx, count)
        labels = read_idx(labels_path, count) if labels_path else None
    except IdxError as error:
        raise ValueError(str(error)) from None
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{labels_path} holds {len(labels)} labels for {len(images)} images")
    started = time.monotonic()
    predictions = client.classify(images, version=version)
    elapsed = time.monotonic() - started
    predicted = [p.label for p in predictions]
    blank = [index for index, image in enumerate(images) if is_blank(image)]
    summary: dict[str, Any] = {
        "images": len(predictions),
        "seconds": round(elapsed, 3),
        "model_version": predictions[0].model_version if predictions else None,
    }
    if labels is not None:
        correct = sum(int(p == t) for p, t in zip(predicted, labels.tolist()))
        summary.update(correct=correct, accuracy=correct / len(labels) if len(labels) else None)
    for index in blank:
        print(f"note: image {index}: {BLANK_NOTE}", file=sys.stderr)
    if as_json:
        print(json.dumps({**summary, "blank": blank, "labels": predicted}))
        return EXIT_OK
    if labels is None:
        for index, p in enumerate(predictions):
            print(f"{index}\t{_columns(p)}")
    print(
        f"classified {len(predictions)} images in {elapsed:.2f} s (model version {summary['model_version']})",
        file=sys.stderr if labels is None else sys.stdout,
    )
    if labels is not None:
        print(f"accuracy {summary['accuracy']:.4f} ({summary['correct']}/{len(labels)})")
    return EXIT_OK


def _columns(prediction: Prediction) -> str:
    """label, probability, and the class name where it says more than the label (Fashion-MNIST)."""
    named = "" if prediction.class_name == str(prediction.label) else f"\t{prediction.class_name}"
    return f"{prediction.label}\t{prediction.probability:.4f}{named}"
