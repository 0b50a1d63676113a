"""Shared fixtures: synthetic data, a model the real trainer exported, a real server process.

The helpers behind them live in tests/support/ (one module per job):
  synthetic.py       write_synthetic_mnist(dir, ...) -> small learnable IDX .gz files
  server_process.py  ServerProcess: the real `mnist-server` on free loopback ports
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # so tests can `import tests.support...` and `benchmarks`


def genuine_dir(*candidates: str | None) -> Path | None:
    """The first of `candidates` that holds the four IDX files (the trainer's names), else None."""
    from mnist_trainer.datasets import FILE_NAMES

    for value in candidates:
        if value and all((Path(value) / name).is_file() for name in FILE_NAMES):
            return Path(value)
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = genuine_dir(os.environ.get("MNIST_DATA_DIR"))
    if path is None:
        pytest.skip("needs the genuine MNIST files in $MNIST_DATA_DIR (.ci/run sets it)")
    return path


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """$FASHION_MNIST_DATA_DIR (.ci/run sets it), else Debian's dataset-fashion-mnist (`make test` installs it)."""
    from mnist_trainer.datasets import DEBIAN_DIR

    path = genuine_dir(os.environ.get("FASHION_MNIST_DATA_DIR"), DEBIAN_DIR)
    if path is None:
        pytest.skip(f"needs the genuine Fashion-MNIST files in $FASHION_MNIST_DATA_DIR or {DEBIAN_DIR}")
    return path


@pytest.fixture(scope="session")
def fashion_exported_model(tmp_path_factory, fashion_mnist_dir) -> Path:
    """A Fashion-MNIST base path holding version 1: the default recipe for 1.5 epochs on the genuine
    files (about 87%; one epoch lands too close to the 85% bar), with its report. Read-only for tests."""
    base = tmp_path_factory.mktemp("models") / "fashion-mnist"
    result = run_trainer(fashion_mnist_dir, base, "--dataset", "fashion-mnist", "--epochs", "1.5", "--seed", "5")
    assert result.returncode == 0, result.stderr[-4000:]
    return base


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    from tests.support.synthetic import write_synthetic_mnist

    return write_synthetic_mnist(tmp_path_factory.mktemp("synthetic-idx"))


def run_trainer(data_dir: Path, model_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """Runs the real trainer CLI in a subprocess (as users and compose do)."""
    cmd = [sys.executable, "-m", "mnist_trainer", "--data-dir", str(data_dir), "--model-dir", str(model_dir), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory, synthetic_data_dir) -> Path:
    """A model base path holding version 1, trained briefly on synthetic data. Read-only for tests."""
    base = tmp_path_factory.mktemp("models") / "mnist"
    result = run_trainer(synthetic_data_dir, base, "--steps", "150", "--batch-size", "64", "--seed", "1", "--no-report")
    assert result.returncode == 0, result.stderr[-4000:]
    assert (base / "1" / "saved_model.pb").is_file()
    return base


@pytest.fixture
def model_base_path(tmp_path, exported_model) -> Path:
    """A private, writable copy of the exported model base path (for hot-reload tests)."""
    dest = tmp_path / "mnist"
    shutil.copytree(exported_model, dest)
    return dest


@pytest.fixture(scope="session")
def server(exported_model):
    """One real server shared by tests that do not change its state."""
    from tests.support.server_process import ServerProcess

    with ServerProcess(["--model-dir", str(exported_model)]) as proc:
        yield proc


@pytest.fixture
def start_server():
    """Factory: `with start_server([...flags]) as proc:` starts a private real server."""
    from tests.support.server_process import ServerProcess

    return ServerProcess
