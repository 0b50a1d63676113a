"""`mnist-client` classify / info / health against the real server, as a user runs it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_client import MnistClient
from tests.conftest import run_trainer
from tests.support.server_process import ServerProcess, free_port
from tests.support.synthetic import synthetic_arrays

CONSOLE_SCRIPT = Path(sys.executable).parent / "mnist-client"
REAL_MNIST_STEPS = "300"  # ~15 s of training; reaches ~98% on the real test set


def mnist_client(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[Path]:
    directory = tmp_path_factory.mktemp("pictures")
    paths = []
    for index, image in enumerate(synthetic_arrays(3, seed=21)[0]):
        buffer = io.BytesIO()
        Image.fromarray(255 - np.kron(image, np.ones((4, 4), np.uint8))).save(buffer, format="PNG")
        paths.append(directory / f"digit{index}.png")
        paths[-1].write_bytes(buffer.getvalue())
    return paths


def test_classify_prints_file_label_and_probability(server, pictures):
    result = mnist_client("--target", server.target, "classify", *map(str, pictures))
    assert result.returncode == 0, result.stderr
    with MnistClient(server.target) as client:
        expected = client.classify(pictures)
    lines = result.stdout.splitlines()
    assert len(lines) == len(pictures)
    for line, path, prediction in zip(lines, pictures, expected):
        file, label, probability = line.split("\t")
        assert (file, int(label)) == (str(path), prediction.label)
        assert float(probability) == pytest.approx(prediction.probability, abs=1e-4)


def test_classify_json_and_the_target_from_the_environment(server, pictures):
    result = mnist_client("classify", "--json", str(pictures[0]), env={"MNIST_CLIENT_TARGET": server.target})
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)
    assert entry["file"] == str(pictures[0]) and 0 <= entry["label"] <= 9
    assert len(entry["probabilities"]) == 10 and entry["model_version"] >= 1
    assert entry["class_name"]


def test_bad_files_are_named_and_the_good_ones_still_answered(server, pictures, tmp_path):
    bogus, missing = tmp_path / "notes.png", tmp_path / "missing.png"
    bogus.write_text("not an image")
    result = mnist_client(
        "classify", str(pictures[0]), str(bogus), str(missing), str(pictures[1]), "--target", server.target
    )  # options after the command, too
    assert result.returncode == 1
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(pictures[0]), str(pictures[1])]
    assert f"error: {bogus}: not a PNG or JPEG image" in result.stderr
    assert f"error: {missing}: cannot read: No such file or directory" in result.stderr
    assert "image 0" not in result.stderr and "image 1" not in result.stderr


def test_a_blank_image_gets_an_answer_flagged_as_meaningless(server, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    text = mnist_client("--target", server.target, "classify", str(blank))
    assert text.returncode == 0 and text.stdout.startswith(f"{blank}\t")
    assert f"note: {blank}: blank image: the answer means nothing" in text.stderr
    as_json = mnist_client("--target", server.target, "classify", "--json", str(blank))
    assert json.loads(as_json.stdout)[0]["blank"] is True


def test_info_shows_the_model_and_its_metadata(server):
    text = mnist_client("--target", server.target, "info")
    assert text.returncode == 0, text.stderr
    assert "model        mnist version 1" in text.stdout and "test_accuracy" in text.stdout
    as_json = json.loads(mnist_client("--target", server.target, "info", "--json").stdout)
    assert as_json["name"] == "mnist" and as_json["input_shape"] == [-1, 28, 28]
    assert len(as_json["class_names"]) == 10 and "test_accuracy" in as_json["metadata"]


def test_health_exit_code_is_zero_only_when_serving(server):
    serving = mnist_client("--target", server.target, "health")
    assert (serving.returncode, serving.stdout.strip()) == (0, "SERVING")
    unknown = mnist_client("--target", server.target, "health", "--service", "no.such.Service")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    down = mnist_client("--target", f"127.0.0.1:{free_port()}", "--timeout", "3", "health")
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr


def test_health_is_not_serving_while_the_model_is_missing(start_server, tmp_path):
    empty = tmp_path / "models" / "mnist"
    empty.mkdir(parents=True)
    with start_server(["--model-dir", str(empty)], wait_ready=False) as waiting:
        result = None
        for _ in range(100):  # until the server listens; then it must say NOT_SERVING
            result = mnist_client("--target", waiting.target, "--timeout", "2", "health")
            if "UNAVAILABLE" not in result.stderr:
                break
        assert result.returncode == 1 and result.stdout.strip() == "NOT_SERVING", result.stderr


@pytest.fixture(scope="module")
def real_mnist_model(mnist_dir, tmp_path_factory) -> Path:
    """A model the real trainer trained briefly on real MNIST; metadata.json holds its test accuracy."""
    base = tmp_path_factory.mktemp("real-mnist-model") / "mnist"
    result = run_trainer(mnist_dir, base, "--steps", REAL_MNIST_STEPS, "--seed", "3", "--no-report")
    assert result.returncode == 0, result.stderr[-4000:]
    return base


def test_classify_idx_reports_the_accuracy_the_trainer_measured(mnist_dir, real_mnist_model):
    recorded = json.loads((real_mnist_model / "1" / "assets.extra" / "metadata.json").read_text())
    with ServerProcess(["--model-dir", str(real_mnist_model)]) as server:
        result = mnist_client(
            "--target",
            server.target,
            "classify",
            "--json",
            "--idx",
            str(mnist_dir / "t10k-images-idx3-ubyte.gz"),
            "--labels",
            str(mnist_dir / "t10k-labels-idx1-ubyte.gz"),
        )
        text = mnist_client(
            "--target",
            server.target,
            "classify",
            "--count",
            "500",
            "--idx",
            str(mnist_dir / "t10k-images-idx3-ubyte.gz"),
            "--labels",
            str(mnist_dir / "t10k-labels-idx1-ubyte.gz"),
        )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["images"] == 10_000 and len(summary["labels"]) == 10_000
    assert recorded["test_accuracy"] > 0.9, "a model that learned MNIST"
    # The same images through the same weights: equal up to float ties (at most 5 in 10,000).
    assert summary["accuracy"] == pytest.approx(recorded["test_accuracy"], abs=5e-4)
    assert text.returncode == 0 and "accuracy" in text.stdout and "/500)" in text.stdout
