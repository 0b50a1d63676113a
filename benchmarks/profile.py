"""Where our server spends its time under load: py-spy samples, summarised per function.

Two recordings at the same load: every busy thread (what costs CPU: the event loop, the model
thread) and only the thread holding the GIL (what serialises Python work). py-spy reads the
process from outside and, with --nonblocking, does not pause it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from benchmarks.load import Point, measure_server
from benchmarks.processes import REPO_ROOT, ServerProcess

SAMPLES_PER_S = 200
TOP = 15
LINE_NUMBER = re.compile(r":\d+\)$")


def py_spy() -> str:
    return str(Path(sys.executable).parent / "py-spy")


def record(server: ServerProcess, point: Point, seconds: float, warmup: float, out_dir: Path, gil_only: bool) -> dict:
    """Samples `server` for `seconds` while the load tester drives it at `point`."""
    name = "gil" if gil_only else "busy"
    raw = out_dir / f"profile-{name}.txt"
    command = [
        py_spy(),
        "record",
        "--pid",
        str(server.pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        str(SAMPLES_PER_S),
        "--format",
        "raw",
        "--output",
        str(raw),
        "--nonblocking",
        "--function",
        "--threads",
    ]
    if gil_only:
        command.append("--gil")
    out_dir.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        load = measure_server(server, point, seconds + 1.0, warmup)
        _, errors = spy.communicate(timeout=seconds + 60)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    if spy.returncode != 0 or not raw.is_file():
        return {"kind": name, "error": errors.strip()[-500:] or f"py-spy exited {spy.returncode}"}
    return {
        "kind": name,
        "raw_file": str(raw.relative_to(REPO_ROOT)) if raw.is_relative_to(REPO_ROOT) else str(raw),
        "load": load,
        **summarise(raw.read_text()),
    }


# Where a sample's time goes, decided from its thread and stack (first matching rule wins).
CATEGORIES = (
    (
        "model call (TensorFlow or LiteRT; on the event loop's thread when computed inline)",
        lambda thread, frames, leaf: any(
            ".predict (mnist_server/" in f or "tensorflow/" in f or "ai_edge_litert/" in f for f in frames
        ),
    ),
    # grpc.aio's poller thread: the completion queue polled in Cython/C, events handed to the loop
    ("gRPC's poller thread (_poll_wrapper)", lambda thread, frames, leaf: "_poll_wrapper" in thread),
    ("event loop waiting in epoll", lambda thread, frames, leaf: leaf.startswith("EpollSelector.select")),
    (
        "our request path (metered handler, service, core, batcher, metrics)",
        lambda thread, frames, leaf: any("mnist_server/" in f and "__main__" not in f for f in frames),
    ),
    # the loop's C code: asyncio's callbacks (Handle._run) or, on uvloop, the whole loop (Runner.run), with
    # gRPC's Cython inside; on uvloop this also holds the loop's waits in epoll (only the GIL view excludes them)
    (
        "gRPC and event-loop C code (callbacks; on uvloop also its epoll waits)",
        lambda thread, frames, leaf: leaf.startswith(("Handle._run", "Runner.run")),
    ),
    ("asyncio scheduling (Python)", lambda thread, frames, leaf: "asyncio/" in leaf),
    (
        "thread hand-offs (executor, queues, locks)",
        lambda thread, frames, leaf: any(name in leaf for name in ("concurrent/futures", "threading.py", "queue")),
    ),
)


def category(thread: str, frames: list[str]) -> str:
    leaf = frames[-1] if frames else ""
    for name, matches in CATEGORIES:
        if matches(thread, frames, leaf):
            return name
    return "other"


def summarise(collapsed: str) -> dict:
    """Collapsed stacks ("thread;frame;frame count") -> shares of samples per function and thread."""
    inclusive: Counter = Counter()
    own: Counter = Counter()
    threads: Counter = Counter()
    categories: Counter = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        thread, frames = (frames[0], frames[1:]) if frames[0].startswith("thread") else ("?", frames)
        threads[thread] += count
        names = [LINE_NUMBER.sub(")", f) for f in frames]
        categories[category(thread, names)] += count
        for name in set(names):
            inclusive[name] += count
        if names:
            own[names[-1]] += count
    share = (lambda c: c / total) if total else (lambda c: 0.0)
    return {
        "samples": total,
        "threads": [{"thread": t, "share": share(c)} for t, c in threads.most_common()],
        "categories": [{"category": k, "share": share(c)} for k, c in categories.most_common()],
        "top_self": [{"function": f, "share": share(c)} for f, c in own.most_common(TOP)],
        "top_inclusive": [{"function": f, "share": share(c)} for f, c in inclusive.most_common(TOP * 2)],
    }


def profile_server(server: ServerProcess, point: Point, seconds: float, warmup: float, out_dir: Path) -> dict:
    return {
        "point": point.key,
        "label": server.spec.label,
        "recordings": [record(server, point, seconds, warmup, out_dir, gil_only) for gil_only in (False, True)],
    }
