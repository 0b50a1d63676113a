"""What a LiteRT-only serving process would cost, without TensorFlow: this process imports what
such a server needs (grpc, numpy, ai_edge_litert, prometheus_client), loads model.tflite into an
Interpreter and computes one batch; then it says so on stdout and waits until stdin closes, so the
harness can read its memory. `--with-tensorflow` adds `import tensorflow` first (as our server,
which imports it, does): the difference between the two is TensorFlow's import cost.

    python -m benchmarks.litert_probe VERSION_DIR/model.tflite [--with-tensorflow] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import sys

BATCH = 64  # the largest batch --runtime auto gives LiteRT by default: its biggest working buffers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_file")
    parser.add_argument("--with-tensorflow", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.with_tensorflow:
        import tensorflow  # noqa: F401  (only its import's cost is wanted)
    import grpc  # noqa: F401
    import numpy as np
    import prometheus_client  # noqa: F401
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=args.model_file, num_threads=args.threads).get_signature_runner("serving_default")
    probabilities = runner(images=np.zeros((BATCH, 28, 28), np.uint8))["probabilities"]
    print(json.dumps({"ready": True, "outputs": len(probabilities)}), flush=True)
    sys.stdin.read()  # hold the memory until the harness has read it


if __name__ == "__main__":
    main()
