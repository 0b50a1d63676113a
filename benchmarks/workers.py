"""Long-lived helper processes the harness talks to in JSON lines: one command on stdin, one
result on stdout. Each pays its imports (TensorFlow: seconds) once, not per measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.load import Point
from benchmarks.plan import ComputeRuntime
from benchmarks.processes import REPO_ROOT, ServerProcess

STOP_TIMEOUT_S = 10.0


class LineWorker:
    """`python -m module *args` answering one JSON line per JSON line; stderr goes to a log."""

    def __init__(self, module: str, args: list[str], log_path: Path):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both PIPE
        self._stdin, self._stdout = self.proc.stdin, self.proc.stdout
        if not self._read().get("ready"):
            raise RuntimeError(f"{module} did not start; see {log_path}")

    def _read(self) -> dict:
        line = self._stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.proc.poll()}; see {self.log.name}")
        return json.loads(line)

    def request(self, command: dict) -> dict:
        self._stdin.write(json.dumps(command) + "\n")
        self._stdin.flush()
        return self._read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self._stdin.close()  # the worker's loop ends at end of input
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class ComputeWorker(LineWorker):
    """`benchmarks.compute_ceiling`: the model called directly, per runtime."""

    def __init__(self, model_dir: Path, log_path: Path):
        super().__init__("benchmarks.compute_ceiling", ["--model-dir", str(model_dir)], log_path)

    def measure(self, runtime: ComputeRuntime, batch: int, seconds: float, busy_python_thread: bool = False) -> dict:
        return self.request(
            {
                "runtime": runtime.runtime,
                "threads": runtime.threads,
                "batch": batch,
                "seconds": seconds,
                "busy_python_thread": busy_python_thread,
            }
        )


class TfServingLoad(LineWorker):
    """`benchmarks.tfserving_load`: TF Serving Predict with tensor_content, closed loop."""

    def __init__(self, log_path: Path):
        super().__init__("benchmarks.tfserving_load", [], log_path)

    def measure(self, server: ServerProcess, point: Point, seconds: float, warmup: float) -> dict:
        return self.request(
            {
                "target": server.target,
                "concurrency": point.concurrency,
                "batch": point.batch,
                "seconds": seconds,
                "warmup": warmup,
            }
        )


class RestLoad(LineWorker):
    """`benchmarks.rest_load`: our HTTP port's JSON APIs (rest_load.PATHS), closed loop."""

    def __init__(self, log_path: Path):
        super().__init__("benchmarks.rest_load", [], log_path)

    def measure(self, server: ServerProcess, api: str, point: Point, seconds: float, warmup: float) -> dict:
        return self.request(
            {
                "target": server.http_target,
                "api": api,
                "concurrency": point.concurrency,
                "batch": point.batch,
                "seconds": seconds,
                "warmup": warmup,
            }
        )
