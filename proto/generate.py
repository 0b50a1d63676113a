"""Generate the Python gRPC code for our API next to its .proto files, in the contract package (the one
generation command; the package is proto/, distribution mnist-serving-api).

Run from anywhere: `python proto/generate.py` (or `--out DIR` to generate elsewhere, as the
freshness test does). The proto folder mirrors the package (`mnist_serving/v1/`), so the
generated imports come out absolute and need no patching.
"""

import argparse
import pathlib
import sys

from grpc_tools import protoc

PROTO_ROOT = pathlib.Path(__file__).resolve().parent
OUT_DIR = PROTO_ROOT


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: pathlib.Path = OUT_DIR) -> int:
    """Writes the generated modules under `out_dir`; returns protoc's exit code."""
    protos = proto_files()
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        return 1
    # Make the generated folders regular packages so setuptools ships them.
    for folder in {(out_dir / p).parent for p in protos}:
        while folder != out_dir:
            (folder / "__init__.py").touch()
            folder = folder.parent
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT_DIR, help="output root (default: %(default)s)")
    return generate(parser.parse_args(argv).out.resolve())


if __name__ == "__main__":
    sys.exit(main())
