"""A version copied in file by file is "still being written", not "broken": ModelRepository with a
fake loader, driven scan by scan (each poll_once is one scan; the test writes files between them)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from mnist_server.errors import ModelLoadError, ModelUnavailable
from mnist_server.metrics import ServerMetrics
from mnist_server.repository import ModelRepository, VersionState
from tests.unit.test_server_repository import FakeModel, add_version, loads, make_repository

COMPLETE = b"all the weights"  # what the fake loader needs in variables.data to load a version


class CountingLoader:
    """Loads a version only when variables.data holds COMPLETE; records every call. `during_load`
    runs inside the load (a writer racing the loader)."""

    def __init__(self):
        self.calls: list[int] = []
        self.during_load = None

    def __call__(self, name, version, path, device):
        self.calls.append(version)
        if self.during_load is not None:
            self.during_load(path)
        data = path / "variables.data"
        if not data.is_file() or data.read_bytes() != COMPLETE:
            raise ModelLoadError(f"cannot load SavedModel {path}: variables missing or truncated")
        return FakeModel(name, version, path)


def with_loader(base: Path, loader) -> tuple[ModelRepository, ServerMetrics]:
    return make_repository(base, keep=1, loader=loader)


def good_version(base: Path, name: str) -> Path:
    path = add_version(base, name)
    (path / "variables.data").write_bytes(COMPLETE)
    return path


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:  # sizes change with every write: mtime granularity does not matter
        file.write(data)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_version_copied_file_by_file_is_served_once_complete_without_a_failure(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mnist_server")
    good_version(tmp_path, "1")
    loader = CountingLoader()

    async def scenario():
        repo, metrics = with_loader(tmp_path, loader)
        await repo.poll_once()
        copy = add_version(tmp_path, "2")  # saved_model.pb is there, the weights are not yet
        await repo.poll_once()  # tried (it may be complete): fails, but on files never seen before
        assert loader.calls == [1, 2] and loads(metrics, "failure") == 0
        assert repo.statuses("mnist")[0].state is VersionState.START
        data = copy / "variables.data"
        for chunk in (COMPLETE[:4], COMPLETE[4:9], COMPLETE[9:]):  # complete-looking, still growing
            append(data, chunk)
            await repo.poll_once()  # changed since the last scan: not even tried
        assert loader.calls == [1, 2] and repo.resolve("mnist").model.version == 1
        await repo.poll_once()  # unchanged since the last scan: tried, and it loads
        assert loader.calls == [1, 2, 2] and repo.resolve("mnist").model.version == 2
        assert (loads(metrics, "failure"), loads(metrics, "success")) == (0, 2)
        await repo.close(1)

    run(scenario())
    assert errors(caplog) == []
    assert "model mnist: version 2 is still being written; looking again at the next scan" in caplog.messages


def test_a_broken_version_is_counted_once_and_not_retried_while_its_files_stay_the_same(tmp_path, caplog):
    good_version(tmp_path, "1")
    add_version(tmp_path, "2")  # there from the start, never loadable
    loader = CountingLoader()

    async def scenario():
        repo, metrics = with_loader(tmp_path, loader)
        await repo.poll_once()  # first sight: maybe half-copied, so not judged yet
        assert repo.resolve("mnist").model.version == 1 and loads(metrics, "failure") == 0
        await repo.poll_once()  # the same files fail again: broken
        assert loads(metrics, "failure") == 1
        status = repo.statuses("mnist")[0]
        assert (status.version, status.state) == (2, VersionState.END) and "truncated" in status.error
        for _ in range(5):
            await repo.poll_once()
        assert loader.calls == [2, 1, 2] and loads(metrics, "failure") == 1  # not retried, not recounted
        await repo.close(1)

    run(scenario())
    assert [m for m in errors(caplog) if "version 2 rejected, still serving [1]" in m] == [errors(caplog)[0]]
    assert len(errors(caplog)) == 1


def test_a_broken_version_rewritten_in_place_loads_without_another_failure(tmp_path):
    good_version(tmp_path, "1")
    broken = add_version(tmp_path, "2")
    (broken / "variables.data").write_bytes(b"garbage")
    loader = CountingLoader()

    async def scenario():
        repo, metrics = with_loader(tmp_path, loader)
        await repo.poll_once()
        await repo.poll_once()
        assert loads(metrics, "failure") == 1
        data = broken / "variables.data"
        data.write_bytes(COMPLETE[:3])  # the fix being copied over it
        await repo.poll_once()  # files changed: tried again, fails on moving files: not counted
        append(data, COMPLETE[3:])
        await repo.poll_once()  # still changing
        await repo.poll_once()  # settled: loads
        assert repo.resolve("mnist").model.version == 2
        assert (loads(metrics, "failure"), loads(metrics, "success")) == (1, 2)
        await repo.close(1)

    run(scenario())


def test_a_version_whose_files_change_while_it_loads_is_not_served_from_them(tmp_path):
    good_version(tmp_path, "1")
    loader = CountingLoader()

    async def scenario():
        repo, metrics = with_loader(tmp_path, loader)
        await repo.poll_once()
        loader.during_load = lambda path: append(path / "labels.txt", b"x\n")  # the copy goes on
        good_version(tmp_path, "2")
        await repo.poll_once()  # loads, but from files that moved under it: dropped, not served
        assert loader.calls == [1, 2] and repo.resolve("mnist").model.version == 1
        assert repo.statuses("mnist")[0].state is VersionState.START
        loader.during_load = None  # the copy is done
        await repo.poll_once()
        assert loader.calls == [1, 2, 2] and repo.resolve("mnist").model.version == 2
        assert (loads(metrics, "failure"), loads(metrics, "success")) == (0, 2)
        await repo.close(1)

    run(scenario())


def test_with_nothing_served_the_unavailable_reason_says_a_version_is_being_written(tmp_path):
    add_version(tmp_path, "3")

    async def scenario():
        repo, _ = with_loader(tmp_path, CountingLoader())
        await repo.poll_once()
        with pytest.raises(ModelUnavailable, match="version 3 is still being written"):
            repo.resolve("mnist")
        await repo.close(1)

    run(scenario())


def test_a_version_removed_before_it_was_complete_is_forgotten(tmp_path):
    good_version(tmp_path, "1")
    loader = CountingLoader()

    async def scenario():
        repo, metrics = with_loader(tmp_path, loader)
        await repo.poll_once()
        partial = add_version(tmp_path, "2")
        await repo.poll_once()
        for path in partial.iterdir():
            path.unlink()
        partial.rmdir()  # the copy was aborted and cleaned up
        await repo.poll_once()
        good_version(tmp_path, "2")  # copied again, in one go this time
        await repo.poll_once()  # first sight of these files: served at once
        assert repo.resolve("mnist").model.version == 2 and loads(metrics, "failure") == 0
        await repo.close(1)

    run(scenario())
