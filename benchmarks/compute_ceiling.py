"""The compute ceiling: the model called directly, in-process, by one caller, per runtime.

- TensorFlow: the SavedModel's `serving_default` signature, numpy in and out.
- LiteRT: the version's model.tflite in `ai_edge_litert`'s Interpreter (signature runner
  "serving_default"), with a given number of interpreter threads.

No server can compute faster than its runtime does here. Runs as a worker process so the harness
can interleave its rounds with the servers' rounds (background load then hits every configuration
alike). Protocol: one JSON object per line on stdin,
`{"runtime": "litert", "threads": 2, "batch": 64, "seconds": 1.5}`, one JSON result per line on
stdout. Each model is loaded on first use; nothing else runs in the process while it measures.

    python -m benchmarks.compute_ceiling --model-dir BASE          # worker (stdin/stdout)
    python -m benchmarks.compute_ceiling --model-dir BASE --once tensorflow:1,8,64 --once litert:1,64
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

from benchmarks.models import TFLITE_FILE, latest_version
from benchmarks.stats import latency_summary

WARMUP_CALLS = 5
MAX_CALLS_PER_ROUND = 100_000  # bounds every loop even with a broken clock
SIGNATURE = "serving_default"


class TensorFlowCall:
    """The serving signature, fed a numpy batch and read back to numpy: what any server must do."""

    def __init__(self, version_dir: Path, threads: int = 0):  # threads: TensorFlow's defaults, as served
        import tensorflow as tf

        self._tf = tf
        self._signature = tf.saved_model.load(str(version_dir)).signatures[SIGNATURE]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._signature(images=self._tf.constant(images))["probabilities"].numpy()


class LiteRTCall:
    """model.tflite through the signature runner, as the server's LiteRT runtime calls it (the
    runner resizes the input to each call's shape; a no-op when the size does not change)."""

    def __init__(self, version_dir: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(version_dir / TFLITE_FILE), num_threads=threads)
        self._runner = interpreter.get_signature_runner(SIGNATURE)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._runner(images=images)["probabilities"]


RUNTIMES = {"tensorflow": TensorFlowCall, "litert": LiteRTCall}


class ComputeCeiling:
    """Every runtime's caller for one model version, loaded on first use."""

    def __init__(self, model_dir: Path):
        self.version_dir = latest_version(model_dir)
        self._calls: dict[tuple[str, int], object] = {}
        self._images: dict[int, np.ndarray] = {}

    def call_for(self, runtime: str, threads: int):
        key = (runtime, threads)
        if key not in self._calls:
            self._calls[key] = RUNTIMES[runtime](self.version_dir, threads)
        return self._calls[key]

    def measure(self, runtime: str, threads: int, batch: int, seconds: float, busy_python_thread: bool = False) -> dict:
        """busy_python_thread: a second thread runs pure Python meanwhile, as a server's event loop
        does; it holds the GIL that the calling thread needs back after the runtime computes."""
        call = self.call_for(runtime, threads)
        images = self._images.setdefault(
            batch, np.random.default_rng(batch).integers(0, 256, (batch, 28, 28), dtype=np.uint8)
        )
        for _ in range(WARMUP_CALLS):
            call(images)
        latencies: list[float] = []
        with _BusyPythonThread() if busy_python_thread else _Nothing():
            start = time.perf_counter()
            deadline = start + seconds
            while time.perf_counter() < deadline and len(latencies) < MAX_CALLS_PER_ROUND:
                began = time.perf_counter()
                call(images)
                latencies.append(time.perf_counter() - began)
            elapsed = time.perf_counter() - start
        return {
            "runtime": runtime,
            "threads": threads,
            "batch": batch,
            "calls": len(latencies),
            "images_per_s": batch * len(latencies) / elapsed,
            **latency_summary(latencies),
        }


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info) -> None:
        return None


class _BusyPythonThread:
    """A thread looping in Python bytecode (never blocking, so it gives the GIL up only when
    CPython's switch interval forces it), for the duration of a `with` block."""

    def __enter__(self) -> _BusyPythonThread:
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


def serve_stdin(ceiling: ComputeCeiling) -> None:
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        result = ceiling.measure(
            request["runtime"],
            int(request.get("threads", 0)),
            int(request["batch"]),
            float(request["seconds"]),
            bool(request.get("busy_python_thread")),
        )
        print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument(
        "--once",
        action="append",
        metavar="RUNTIME[/THREADS]:BATCHES",
        help="e.g. tensorflow:1,8,64 or litert/1:1,64 - measure each, print JSON, exit",
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    ceiling = ComputeCeiling(args.model_dir)
    if args.once:
        results = []
        for spec in args.once:
            runtime, batches = spec.split(":")
            name, _, threads = runtime.partition("/")
            threads = int(threads) if threads else len(os.sched_getaffinity(0)) if name == "litert" else 0
            results += [ceiling.measure(name, threads, int(b), args.seconds) for b in batches.split(",")]
        print(json.dumps(results, indent=1))
    else:
        serve_stdin(ceiling)


if __name__ == "__main__":
    main()
