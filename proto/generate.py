"""Generate the Python gRPC code for our API into client/ (the one generation command).

Run from anywhere: `python proto/generate.py`. The proto folder mirrors the package
(`mnist_serving/v1/`), so the generated imports come out absolute and need no patching.
"""
import pathlib
import sys

from grpc_tools import protoc

PROTO_ROOT = pathlib.Path(__file__).resolve().parent
OUT_DIR = PROTO_ROOT.parent / "client"


def main() -> int:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={OUT_DIR}",
            f"--pyi_out={OUT_DIR}", f"--grpc_python_out={OUT_DIR}", *protos]
    if protoc.main(args) != 0:
        return 1
    # Make the generated folders regular packages so setuptools ships them.
    for folder in {(OUT_DIR / p).parent for p in protos}:
        while folder != OUT_DIR:
            (folder / "__init__.py").touch()
            folder = folder.parent
    return 0


if __name__ == "__main__":
    sys.exit(main())
