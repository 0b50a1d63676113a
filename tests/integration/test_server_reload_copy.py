"""A version copied into the base path file by file (as `cp -r`, `kubectl cp` or a sync job do, with
no dot-directory and rename) on a real server: while it is incomplete the server says it is still
being written, counts no failure, and serves it once it is complete."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.support.server_process import ServerProcess, metric, scrape_metrics, served_runtime

POLL_S = 1.0
CHUNKS = 30
CHUNK_PAUSE_S = 0.1  # far below the poll interval: every scan sees the copy move on
WAIT_S = 60


def copy_file_by_file(source: Path, dest: Path) -> None:
    """Everything else first, then saved_model.pb (from here the server tries it), then the weights
    growing in chunks: for about three seconds the directory looks complete but is not."""
    weights = next(source.glob("variables/variables.data-*"))
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.name != "saved_model.pb" and path != weights:
            (dest / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / path.relative_to(source))
    shutil.copy2(source / "saved_model.pb", dest / "saved_model.pb")
    data = weights.read_bytes()
    step = len(data) // CHUNKS + 1
    with (dest / weights.relative_to(source)).open("wb") as out:
        for start in range(0, len(data), step):
            out.write(data[start : start + step])
            out.flush()
            time.sleep(CHUNK_PAUSE_S)


def test_a_version_copied_file_by_file_is_served_once_complete_and_never_counted_as_failed(
    model_base_path, exported_model
):
    with ServerProcess(["--model-dir", str(model_base_path), "--poll-interval", str(POLL_S)]) as server:
        copy_file_by_file(exported_model / "1", model_base_path / "2")
        deadline = time.monotonic() + WAIT_S
        while metric(scrape_metrics(server.http_url), "mnist_serving_model_version", model="mnist") != 2:
            assert time.monotonic() < deadline, f"version 2 was never served:\n{server.log_tail()}"
            time.sleep(0.1)
        samples = scrape_metrics(server.http_url)
        log = server.log_text()
    assert metric(samples, "mnist_serving_model_loads_total", outcome="failure") == 0, log[-3000:]
    assert metric(samples, "mnist_serving_model_loads_total", outcome="success") == 2
    # Served from the complete files, LiteRT's model.tflite included.
    assert (
        metric(samples, "mnist_serving_model_runtime_info", model="mnist", version="2", runtime=served_runtime()) == 1
    )
    assert "model mnist: version 2 not served yet (" in log  # seen incomplete (reason: per runtime)
    assert "model mnist: version 2 is still being written; looking again at the next scan" in log
    assert " ERROR mnist_server" not in log and "rejected" not in log
