"""The compute ceiling: the SavedModel's serving signature called directly, in-process, one caller.

Runs as a worker process so the harness can interleave its rounds with the servers' rounds
(background load then hits every configuration alike). Protocol: one JSON object per line on
stdin, `{"batch": 64, "seconds": 3.0}`, one JSON result per line on stdout. The process loads
TensorFlow once; nothing else runs in it while it measures.

    python -m benchmarks.compute_ceiling --model-dir BASE          # worker (stdin/stdout)
    python -m benchmarks.compute_ceiling --model-dir BASE --once 1,8,64,256
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.models import latest_version
from benchmarks.stats import latency_summary

WARMUP_CALLS = 5
MAX_CALLS_PER_ROUND = 100_000  # bounds every loop even with a broken clock


class DirectModel:
    """The serving signature, fed a numpy batch and read back to numpy: what any server must do."""

    def __init__(self, model_dir: Path):
        import tensorflow as tf

        self._tf = tf
        self.version_dir = latest_version(model_dir)
        self._signature = tf.saved_model.load(str(self.version_dir)).signatures["serving_default"]
        self._images: dict[int, np.ndarray] = {}

    def call(self, images: np.ndarray) -> np.ndarray:
        outputs = self._signature(images=self._tf.constant(images))
        return outputs["probabilities"].numpy()

    def measure(self, batch: int, seconds: float, busy_python_thread: bool = False) -> dict:
        """busy_python_thread: a second thread runs pure Python meanwhile, as a server's event loop
        does; it holds the GIL that the calling thread needs back after TensorFlow computes."""
        if busy_python_thread:
            with _BusyPythonThread():
                return self.measure(batch, seconds)
        images = self._images.setdefault(
            batch, np.random.default_rng(batch).integers(0, 256, (batch, 28, 28), dtype=np.uint8))
        for _ in range(WARMUP_CALLS):
            self.call(images)
        latencies = []
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline and len(latencies) < MAX_CALLS_PER_ROUND:
            began = time.perf_counter()
            self.call(images)
            latencies.append(time.perf_counter() - began)
        elapsed = time.perf_counter() - start
        return {"batch": batch, "calls": len(latencies),
                "images_per_s": batch * len(latencies) / elapsed, **latency_summary(latencies)}


class _BusyPythonThread:
    """A thread looping in Python bytecode (never blocking, so it gives the GIL up only when
    CPython's switch interval forces it), for the duration of a `with` block."""

    def __enter__(self) -> "_BusyPythonThread":
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="busy-python", daemon=True)
        self._thread.start()
        return self

    def _spin(self) -> None:
        count = 0
        while not self._stop.is_set():
            count += 1

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def serve_stdin(model: DirectModel) -> None:
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        print(json.dumps(model.measure(int(request["batch"]), float(request["seconds"]),
                                       bool(request.get("busy_python_thread")))), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--once", help="comma-separated batch sizes: measure each, print JSON, exit")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    model = DirectModel(args.model_dir)
    if args.once:
        results = [model.measure(int(b), args.seconds) for b in args.once.split(",")]
        print(json.dumps(results, indent=1))
    else:
        serve_stdin(model)


if __name__ == "__main__":
    main()
