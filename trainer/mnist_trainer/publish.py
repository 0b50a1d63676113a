"""TensorFlow Serving's model base path: integer version directories, each published atomically.

A version is written into a dot-directory inside the base path (same filesystem, and servers skip
dot-directories), then renamed to the next free integer. A server polling the base path therefore sees either
no new version or a complete one, even if the trainer is killed half way.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from mnist_serving import layout
from mnist_serving.layout import STAGING_PREFIX

from .errors import ExportError

log = logging.getLogger(__name__)


def existing_versions(base: Path) -> list[int]:
    """The version directories in `base`, ascending (mnist_serving.layout's rule, which the server reads by)."""
    if not base.is_dir():
        return []
    return sorted(layout.version_dirs(base))


def prepare_base(base: Path) -> None:
    """Creates the base path, or fails early (before any training) if it cannot be written."""
    try:
        base.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryDirectory(prefix=STAGING_PREFIX, dir=base)
        probe.cleanup()
    except OSError as exc:
        raise ExportError(f"cannot write to model directory {base}: {exc.strerror or exc}") from None


def publish(base: Path, write: Callable[[Path], None]) -> tuple[int, Path]:
    """Runs `write(staging_dir)`, then renames the staging directory to the next version number.

    If `write` raises, the staging directory is removed and no version appears.
    """
    prepare_base(base)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=base))
    try:
        write(staging)
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; a server running as another user must read it
        return _rename_to_next_version(base, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _rename_to_next_version(base: Path, staging: Path) -> tuple[int, Path]:
    # Another trainer may publish at the same time: rename() fails when our number was taken by a
    # (non-empty) version meanwhile, and we try the next one.
    for _ in range(100):
        version = max(existing_versions(base), default=0) + 1
        target = base / str(version)
        try:
            os.rename(staging, target)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                continue
            raise
        log.info("published version %d at %s", version, target)
        return version, target
    raise ExportError(f"could not claim a free version number in {base}")
