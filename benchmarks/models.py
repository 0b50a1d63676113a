"""The model every configuration serves: one the real trainer exported (trained once, then cached)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHED_MODEL_DIR = REPO_ROOT / ".cache" / "bench" / "models" / "mnist"
# Serving cost does not depend on how well the model is trained; a short run keeps `make bench` short.
TRAINING_STEPS = 300
TFLITE_FILE = "model.tflite"  # the LiteRT runtime's file, exported by the trainer beside saved_model.pb
METADATA_FILE = Path("assets.extra") / "metadata.json"
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def find_latest_version(base: Path) -> Path | None:
    """The highest complete numbered version under a model base path (the server's policy), or None."""
    versions = (
        [p for p in base.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()] if base.is_dir() else []
    )
    return max(versions, key=lambda p: int(p.name)) if versions else None


def latest_version(base: Path) -> Path:
    version = find_latest_version(base)
    if version is None:
        raise SystemExit(f"no model version under {base}")
    return version


def has_proven_tflite(version: Path) -> bool:
    """model.tflite is there and is the file the trainer proved equal to the SavedModel (its SHA-256
    in the version's metadata), as `--runtime litert` requires; exports older than that lack it."""
    model_file = version / TFLITE_FILE
    try:
        record = json.loads((version / METADATA_FILE).read_text()).get("tflite") or {}
        return record.get("sha256") == hashlib.sha256(model_file.read_bytes()).hexdigest()
    except (OSError, ValueError, AttributeError):
        return False


def local_mnist_dir() -> Path | None:
    """$MNIST_DATA_DIR, else the shared copy next to the checkout (as .ci/run does), else None."""
    candidates = [os.environ.get("MNIST_DATA_DIR"), str(REPO_ROOT.parent / "shared" / "data" / "mnist")]
    for candidate in filter(None, candidates):
        if all((Path(candidate) / name).is_file() for name in MNIST_FILES):
            return Path(candidate)
    return None


def ensure_model(model_dir: Path | None) -> Path:
    """`model_dir` if given; otherwise the cached export, trained with the real trainer if missing
    or if it predates a proven model.tflite (then the trainer publishes the next version, with one)."""
    if model_dir is not None:
        if not has_proven_tflite(latest_version(model_dir)):  # fails early with a clear message
            raise SystemExit(
                f"{latest_version(model_dir)} has no {TFLITE_FILE} proven by mnist-trainer; the LiteRT "
                "variants need one (re-export the model with mnist-trainer)"
            )
        return model_dir
    cached = find_latest_version(CACHED_MODEL_DIR)
    if cached is not None and has_proven_tflite(cached):
        return CACHED_MODEL_DIR
    command = [
        sys.executable,
        "-m",
        "mnist_trainer",
        "--model-dir",
        str(CACHED_MODEL_DIR),
        "--steps",
        str(TRAINING_STEPS),
        "--seed",
        "1",
        "--no-report",
    ]
    data_dir = local_mnist_dir()
    if data_dir is not None:  # otherwise the trainer downloads MNIST into its cache
        command += ["--data-dir", str(data_dir)]
    subprocess.run(command, check=True, cwd=REPO_ROOT, timeout=900, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return CACHED_MODEL_DIR
