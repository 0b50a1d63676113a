"""Cold start and memory per runtime, each server alone on the machine; and the floor a
LiteRT-only process (no TensorFlow) would have.

RSS counts every page a process maps, TensorFlow's shared libraries included; PSS splits each
shared page among the processes mapping it, so it is the fairer figure when several servers run
on one machine (both summed over the server's process tree, from /proc).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks import procfs
from benchmarks.load import Point, measure_server
from benchmarks.models import TFLITE_FILE, latest_version
from benchmarks.processes import REPO_ROOT, ServerProcess, ServerSpec
from benchmarks.readings import summary

# Memory is read after this load, so both halves of --runtime auto (LiteRT up to its measured switch,
# TensorFlow above: a full batch of 64 one-image requests merges with others) have run.
WARMUP_POINTS = (Point(64, 1), Point(64, 64))
PROBE_TIMEOUT_S = 120.0
MB = 2**20


def server_footprint(spec: ServerSpec, starts: int, warmup: float, log_dir: Path) -> dict:
    """Cold starts of one configuration, alone: seconds until its first answer, then memory
    after a short load at WARMUP_POINTS."""
    ready, rss, pss, runtimes = [], [], [], set()
    for attempt in range(starts):
        server = ServerProcess(spec, log_dir / f"footprint-{spec.slug}-{attempt}.log")
        try:
            server.start()
            assert server.ready_s is not None  # start() sets it or raises
            ready.append(server.ready_s)
            for point in WARMUP_POINTS:
                measure_server(server, point, warmup, warmup)
            rss.append(server.rss_bytes() / MB)
            pss.append(server.pss_bytes() / MB)
            runtimes.update(server.model_runtimes())
        finally:
            server.stop()
    return {
        "runtime": ", ".join(sorted(runtimes)) or None,
        "starts_s": ready,
        "ready_s": summary(ready),
        "rss_mb": summary(rss),
        "pss_mb": summary(pss),
    }


def probe(model_file: Path, with_tensorflow: bool, log_path: Path) -> dict:
    """One run of benchmarks.litert_probe: seconds from launch to its first batch, then its memory."""
    args = [sys.executable, "-m", "benchmarks.litert_probe", str(model_file)]
    if with_tensorflow:
        args.append("--with-tensorflow")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log_path, "w") as log:
        launched = time.monotonic()
        proc = subprocess.Popen(
            args, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env
        )
        assert proc.stdin is not None and proc.stdout is not None  # both PIPE
        watchdog = threading.Timer(PROBE_TIMEOUT_S, proc.kill)  # a hung import must not hang the run
        watchdog.start()
        try:
            line = proc.stdout.readline()
            seconds = time.monotonic() - launched
            if not line:
                raise RuntimeError(f"litert_probe exited with {proc.wait(PROBE_TIMEOUT_S)}; see {log_path}")
            memory = {"rss_mb": procfs.rss_bytes(proc.pid) / MB, "pss_mb": procfs.pss_bytes(proc.pid) / MB}
        finally:
            watchdog.cancel()
            proc.stdin.close()
            try:
                proc.wait(timeout=PROBE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {"ready_s": seconds, **memory}


def litert_only(model_dir: Path, runs: int, log_dir: Path) -> dict:
    """The LiteRT-only process, and the same with `import tensorflow`, `runs` times each, alternating."""
    model_file = latest_version(model_dir) / TFLITE_FILE
    log_dir.mkdir(parents=True, exist_ok=True)
    kinds = {"LiteRT only": False, "LiteRT + import tensorflow": True}
    samples: dict[str, list[dict]] = {name: [] for name in kinds}
    for attempt in range(runs):
        for name, with_tensorflow in kinds.items():
            samples[name].append(probe(model_file, with_tensorflow, log_dir / f"probe-{attempt}-{with_tensorflow}.log"))
    return {
        name: {key: summary([sample[key] for sample in taken]) for key in ("ready_s", "rss_mb", "pss_mb")}
        for name, taken in samples.items()
    }


def measure(specs: list[ServerSpec], model_dir: Path, starts: int, warmup: float, log_dir: Path) -> dict:
    """The phase: every configuration in `specs`, then the LiteRT-only probes."""
    return {
        "servers": {spec.label: server_footprint(spec, starts, warmup, log_dir) for spec in specs},
        "probes": litert_only(model_dir, starts, log_dir),
    }
