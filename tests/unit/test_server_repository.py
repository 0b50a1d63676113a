"""ModelRepository with a fake loader: which versions load, swap, stay and go (no TensorFlow)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from mnist_server.batcher import Batcher
from mnist_server.config import ModelSource
from mnist_server.errors import ModelLoadError, ModelNotFound, ModelUnavailable
from mnist_server.metrics import ServerMetrics
from mnist_server.model import DeviceChoice
from mnist_server.repository import ModelRepository, VersionState

CPU = DeviceChoice("cpu", "/CPU:0")


class FakeModel:
    def __init__(self, name, version, path):
        self.name, self.version, self.path = name, version, path
        self.class_names = tuple("0123456789")
        self.input_shape = (-1, 28, 28)
        self.unloaded = False
        self.runtime_name = "fake"

    def predict(self, images):
        return {"version": np.full(len(images), self.version)}

    def warm_up(self, sizes):
        if (self.path / "fail-warm-up").exists():
            raise ModelLoadError(f"{self.path}: warm-up failed")

    def unload(self):
        self.unloaded = True


def fake_loader(name, version, path, device):
    if (path / "broken").exists():
        raise ModelLoadError(f"cannot load SavedModel {path}: broken")
    return FakeModel(name, version, path)


def add_version(base: Path, name: str, *markers: str) -> Path:
    path = base / name
    path.mkdir()
    (path / "saved_model.pb").write_bytes(b"fake")
    for marker in markers:
        (path / marker).write_text("")
    return path


def make_repository(base: Path, keep: int = 1, loader=fake_loader) -> tuple[ModelRepository, ServerMetrics]:
    metrics = ServerMetrics()

    def make_batcher(model):
        return Batcher(model.predict, max_batch_size=8, batch_timeout_s=0, max_queue_images=64, executor=None)

    repo = ModelRepository(
        [ModelSource("mnist", base)],
        device=CPU,
        keep_versions=keep,
        make_batcher=make_batcher,
        observer=metrics.repository_observer(),
        loader=loader,
    )
    return repo, metrics


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def loads(metrics, outcome):
    return metrics.model_loads.labels("mnist", outcome)._value.get()


def test_serves_the_highest_complete_integer_version_and_ignores_the_rest(tmp_path):
    add_version(tmp_path, "1")
    add_version(tmp_path, "2")
    add_version(tmp_path, ".tmp-9")  # being written
    add_version(tmp_path, "latest")  # not an integer
    (tmp_path / "7").mkdir()  # no saved_model.pb yet: incomplete
    (tmp_path / "8").write_text("a file, not a directory")

    async def scenario():
        repo, metrics = make_repository(tmp_path)
        with pytest.raises(ModelUnavailable, match="no version loaded yet"):
            repo.resolve("mnist")
        await repo.poll_once()
        assert repo.ready and repo.resolve("mnist").model.version == 2
        assert repo.loaded_versions("mnist") == [2]
        assert loads(metrics, "success") == 1
        await repo.close(1)

    run(scenario())


def test_new_version_swaps_in_and_the_old_one_is_unloaded(tmp_path):
    add_version(tmp_path, "1")

    async def scenario():
        repo, metrics = make_repository(tmp_path)
        await repo.poll_once()
        old = repo.resolve("mnist")
        add_version(tmp_path, "2")
        await repo.poll_once()
        assert repo.resolve("mnist").model.version == 2
        assert old.model.unloaded and old.batcher.closed
        with pytest.raises(ModelNotFound, match="loaded versions: 2"):
            repo.resolve("mnist", 1)
        states = {s.version: s.state for s in repo.statuses("mnist")}
        assert states == {2: VersionState.AVAILABLE, 1: VersionState.END}
        assert metrics.model_version.labels("mnist", "cpu")._value.get() == 2
        await repo.close(1)

    run(scenario())


def test_keep_versions_keeps_older_ones_addressable(tmp_path):
    for name in ("1", "2", "3"):
        add_version(tmp_path, name)

    async def scenario():
        repo, _ = make_repository(tmp_path, keep=2)
        await repo.poll_once()
        assert repo.loaded_versions("mnist") == [2, 3]
        assert repo.resolve("mnist", 2).model.version == 2
        assert repo.resolve("mnist").model.version == 3
        await repo.close(1)

    run(scenario())


@pytest.mark.parametrize("marker, message", [("broken", "broken"), ("fail-warm-up", "warm-up failed")])
def test_a_failing_version_is_rejected_counted_and_not_retried(tmp_path, marker, message):
    add_version(tmp_path, "1")

    async def scenario():
        repo, metrics = make_repository(tmp_path)
        await repo.poll_once()
        bad = add_version(tmp_path, "2", marker)
        await repo.poll_once()  # first sight: it may still be being written, so not judged yet
        assert loads(metrics, "failure") == 0
        await repo.poll_once()  # the same files fail again: broken
        await repo.poll_once()
        assert repo.resolve("mnist").model.version == 1  # the old one keeps serving
        assert loads(metrics, "failure") == 1  # counted once: same files, no retry
        status = repo.statuses("mnist")[0]
        assert (status.version, status.state) == (2, VersionState.END) and message in status.error
        (bad / marker).unlink()  # fixed in place: the files changed, so it is tried again
        await repo.poll_once()
        assert repo.resolve("mnist").model.version == 2
        await repo.close(1)

    run(scenario())


def test_starting_with_a_broken_newest_version_serves_the_next_one(tmp_path):
    add_version(tmp_path, "1")
    add_version(tmp_path, "2", "broken")

    async def scenario():
        repo, _ = make_repository(tmp_path)
        await repo.poll_once()
        assert repo.resolve("mnist").model.version == 1
        await repo.close(1)

    run(scenario())


def test_an_emptied_or_missing_base_path_keeps_what_is_loaded(tmp_path):
    base = tmp_path / "mnist"
    base.mkdir()
    version = add_version(base, "1")

    async def scenario():
        repo, _ = make_repository(base)
        await repo.poll_once()
        for path in sorted(version.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        version.rmdir()
        await repo.poll_once()  # nothing on disk: keep serving
        assert repo.resolve("mnist").model.version == 1
        base.rmdir()
        await repo.poll_once()  # base path gone: keep serving
        assert repo.resolve("mnist").model.version == 1
        await repo.close(1)

    run(scenario())


def test_unloading_waits_for_requests_already_queued(tmp_path):
    add_version(tmp_path, "1")

    async def scenario():
        repo, _ = make_repository(tmp_path)
        await repo.poll_once()
        old = repo.resolve("mnist")
        pending = asyncio.ensure_future(old.batcher.submit(np.zeros((3, 28, 28), np.uint8)))
        await asyncio.sleep(0)
        add_version(tmp_path, "2")
        await repo.poll_once()
        assert (await pending)["version"].tolist() == [1, 1, 1]  # answered by the old version
        await repo.close(1)

    run(scenario())


def test_unknown_model_names_the_served_ones(tmp_path):
    repo, _ = make_repository(tmp_path)
    with pytest.raises(ModelNotFound, match="served models: mnist"):
        repo.resolve("fashion")
