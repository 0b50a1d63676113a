"""The checked-in gRPC code is exactly what `python proto/generate.py` makes from proto/ today."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = REPO_ROOT / "proto"  # the contract package: generated code beside its .proto files
PACKAGE = "mnist_serving"


def _load_generator():
    spec = importlib.util.spec_from_file_location("proto_generate", REPO_ROOT / "proto" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generate(out_dir: Path) -> int:
    """Runs the generator in its own process: grpc_tools' protoc and TensorFlow (imported by other
    tests in this pytest process) crash when loaded into one interpreter."""
    command = [sys.executable, str(REPO_ROOT / "proto" / "generate.py"), "--out", str(out_dir)]
    return subprocess.run(command, timeout=120).returncode


def _generated_files(root: Path) -> dict[str, bytes]:
    """What protoc writes (`*_pb2*`); the package's own modules (layout, images, idx) are not generated."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / PACKAGE).rglob("*_pb2*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_checked_in_code_matches_a_fresh_generation(tmp_path):
    assert _generate(tmp_path) == 0
    fresh, checked_in = _generated_files(tmp_path), _generated_files(CHECKED_IN)
    assert fresh, "the generator produced nothing"
    assert sorted(fresh) == sorted(checked_in), "generated files differ: run `make proto`"
    stale = [name for name in fresh if fresh[name] != checked_in[name]]
    assert not stale, f"stale generated code (run `make proto` and commit): {stale}"


def test_every_proto_file_is_generated(tmp_path):
    assert _generate(tmp_path) == 0
    for proto in _load_generator().proto_files():
        module = tmp_path / proto.replace(".proto", "_pb2.py")
        assert module.is_file(), f"{proto} produced no {module.name}"
