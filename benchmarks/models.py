"""The model every configuration serves: one the real trainer exported (trained once, then cached)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHED_MODEL_DIR = REPO_ROOT / ".cache" / "bench" / "models" / "mnist"
# Serving cost does not depend on how well the model is trained; a short run keeps `make bench` short.
TRAINING_STEPS = 300
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def latest_version(base: Path) -> Path:
    """The highest complete numbered version under a model base path (the server's policy)."""
    versions = [p for p in base.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    if not versions:
        raise SystemExit(f"no model version under {base}")
    return max(versions, key=lambda p: int(p.name))


def local_mnist_dir() -> Path | None:
    """$MNIST_DATA_DIR, else the shared copy next to the checkout (as .ci/run does), else None."""
    candidates = [os.environ.get("MNIST_DATA_DIR"), str(REPO_ROOT.parent / "shared" / "data" / "mnist")]
    for candidate in filter(None, candidates):
        if all((Path(candidate) / name).is_file() for name in MNIST_FILES):
            return Path(candidate)
    return None


def ensure_model(model_dir: Path | None) -> Path:
    """`model_dir` if given; otherwise the cached export, trained with the real trainer if missing."""
    if model_dir is not None:
        latest_version(model_dir)  # fails early with a clear message
        return model_dir
    command = [sys.executable, "-m", "mnist_trainer", "--model-dir", str(CACHED_MODEL_DIR),
               "--steps", str(TRAINING_STEPS), "--seed", "1", "--no-report", "--skip-if-exists"]
    data_dir = local_mnist_dir()
    if data_dir is not None:  # otherwise the trainer downloads MNIST into its cache
        command += ["--data-dir", str(data_dir)]
    subprocess.run(command, check=True, cwd=REPO_ROOT, timeout=900,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return CACHED_MODEL_DIR
