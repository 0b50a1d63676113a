"""Fetching missing dataset files from mirrors, each verified by md5 before it is put in place.

A file passes when its md5 is the published one, or when the IDX bytes it decompresses to have the published
content's md5: a mirror that re-gzipped the files (as Debian's package did) serves the same data.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .datasets import DatasetSpec, file_md5, is_genuine
from .errors import DataMissingError

log = logging.getLogger(__name__)

MIRRORS_ENV = "MNIST_TRAINER_MIRRORS"  # comma-separated base URLs that replace the built-in list
TIMEOUT_SECONDS = 60


def mirrors_from_env() -> tuple[str, ...] | None:
    value = os.environ.get(MIRRORS_ENV, "").strip()
    return tuple(m.strip() for m in value.split(",") if m.strip()) or None


def ensure_files(directory: Path, spec: DatasetSpec, mirrors: tuple[str, ...] | None = None) -> None:
    """Downloads every file of `spec` missing from `directory`; files already there are used as they are."""
    mirrors = mirrors or mirrors_from_env() or spec.mirrors
    missing = [name for name in spec.md5 if not (directory / name).is_file()]
    for i, name in enumerate(missing):
        try:
            fetch(name, spec, directory / name, mirrors)
        except DataMissingError as exc:
            others = missing[i + 1 :]
            raise DataMissingError(f"{exc}" + (f" (also missing: {', '.join(others)})" if others else "")) from None


def fetch(name: str, spec: DatasetSpec, target: Path, mirrors: tuple[str, ...]) -> None:
    """Tries each mirror in order until one delivers `name` with the expected md5."""
    md5 = spec.md5[name]
    other_way = f", {spec.package_hint}" if spec.package_hint else ""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataMissingError(
            f"{name} is missing and {target.parent} cannot be created ({exc.strerror}){other_way}"
        ) from None
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        log.info("downloading %s", url)
        try:
            _download_verified(url, name, spec, target)
            log.info("saved %s (md5 ok)", target)
            return
        except _Md5Mismatch as exc:
            failures.append(f"{url}: md5 {exc.actual}, expected {md5}")
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
        log.warning("%s", failures[-1])
    raise DataMissingError(
        f"{name} is missing: put the file at {target} (md5 {md5}){other_way}; "
        f"downloading it failed from every mirror: " + "; ".join(failures)
    )


class _Md5Mismatch(Exception):
    def __init__(self, actual: str):
        self.actual = actual


def _download_verified(url: str, name: str, spec: DatasetSpec, target: Path) -> None:
    # A dot-file in the same directory: an interrupted download never leaves a file under the real name.
    fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            shutil.copyfileobj(response, out)
        if not is_genuine(Path(partial), name, spec):
            raise _Md5Mismatch(file_md5(Path(partial)))
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
