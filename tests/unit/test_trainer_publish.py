"""Versioned, atomic publishing into a TensorFlow Serving model base path."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from mnist_trainer.errors import ExportError
from mnist_trainer.publish import existing_versions, publish


def _write_marker(directory):
    (directory / "saved_model.pb").write_bytes(b"model")


def test_versions_count_up_from_one(tmp_path):
    base = tmp_path / "models" / "mnist"
    assert publish(base, _write_marker) == (1, base / "1")
    assert publish(base, _write_marker) == (2, base / "2")
    assert existing_versions(base) == [1, 2]
    assert (base / "2" / "saved_model.pb").read_bytes() == b"model"


def test_next_version_is_highest_plus_one_ignoring_other_names(tmp_path):
    for name in ["3", "12", ".tmp-abc", "notes", "7x"]:
        (tmp_path / name).mkdir()
    (tmp_path / "99").write_text("a file, not a version")
    assert existing_versions(tmp_path) == [3, 12]
    assert publish(tmp_path, _write_marker)[0] == 13


def test_failed_write_leaves_no_version_and_no_staging_directory(tmp_path):
    def write_then_fail(directory):
        _write_marker(directory)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        publish(tmp_path, write_then_fail)
    assert list(tmp_path.iterdir()) == []


def test_a_process_killed_before_the_rename_leaves_only_a_dot_directory(tmp_path):
    # A real crash: the writer process dies by SIGKILL half way through writing, with no cleanup.
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from mnist_trainer.publish import publish

        def write_half_then_die(directory):
            (directory / "saved_model.pb").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)

        publish(Path({str(tmp_path)!r}), write_half_then_die)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -9
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")
    assert existing_versions(tmp_path) == []
    assert publish(tmp_path, _write_marker)[0] == 1


def test_published_version_is_readable_by_others(tmp_path):
    _, path = publish(tmp_path, _write_marker)
    assert path.stat().st_mode & 0o755 == 0o755


def test_unwritable_base_fails_before_anything_else(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot write to model directory .*file/mnist"):
        publish(blocker / "mnist", _write_marker)
