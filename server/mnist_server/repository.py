"""Model versions on disk -> loaded, warmed-up versions in memory, swapped atomically.

Each configured model has a base path holding integer version directories (TensorFlow Serving's
layout). Every poll serves the newest `keep_versions` complete versions: new ones are loaded and
warmed up in a loader thread while the old ones keep answering, then published in one assignment;
versions that fall out are closed (their batcher finishes what it accepted) and unloaded. A version
copied in file by file (`cp -r`, `kubectl cp`, a sync job) is seen before it is complete, so a failure
on new or changing files (or a load during which they changed) means "still being written": INFO, look
again at the next scan. Only a failure on files unchanged since the previous scan means broken: an
ERROR, counted once and not retried until the files change; the model keeps what it had.
Dot-directories and non-integer names are never looked at.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mnist_serving import layout

from .batcher import Batcher
from .config import ModelSource
from .errors import ModelLoadError, ModelNotFound, ModelUnavailable
from .model import DeviceChoice, LoadedModel
from .runtimes import load_model

log = logging.getLogger(__name__)


class VersionState(enum.Enum):
    """TF Serving's ModelVersionStatus.State names, so its GetModelStatus maps one to one."""

    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


@dataclass
class VersionStatus:
    version: int
    state: VersionState
    error: str | None = None  # why the load failed (state END)


@dataclass(frozen=True)
class ServedVersion:
    """A version that takes requests: the model and the batcher in front of it."""

    model: LoadedModel
    batcher: Batcher


@dataclass
class _ModelState:
    name: str
    base_path: Path
    served: dict[int, ServedVersion] = field(default_factory=dict)
    latest: ServedVersion | None = None
    statuses: dict[int, VersionStatus] = field(default_factory=dict)
    failed: dict[int, tuple] = field(default_factory=dict)  # version -> files fingerprint at failure
    settling: dict[int, tuple] = field(default_factory=dict)  # version -> fingerprint of maybe half-copied files
    scan_problem: str | None = None


def scan_versions(base_path: Path) -> dict[int, Path]:
    """Complete version directories under base_path (raises OSError if it cannot be listed); the
    layout's rules are mnist_serving.layout's, which the trainer writes by."""
    return {number: path for number, path in layout.version_dirs(base_path).items() if layout.is_complete(path)}


def _describe(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"


def fingerprint(path: Path) -> tuple:
    """Changes when the files that make a SavedModel change (so a fixed version is retried)."""
    items = []
    for root, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            items.append((os.path.relpath(os.path.join(root, name), path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(items))


class RepositoryObserver:
    """Hooks for metrics, handed in by the wiring (metrics.py implements them); the default does nothing."""

    def default_version(self, model: str, device: str, version: int) -> None:
        """The version answering by default (0: none)."""

    def versions_on_disk(self, model: str, count: int) -> None: ...

    def load_failed(self, model: str) -> None: ...

    def version_loaded(self, model: str, version: int, runtime: str, seconds: float) -> None: ...

    def version_unloaded(self, model: str, version: int, runtime: str) -> None: ...


class ModelRepository:
    def __init__(
        self,
        sources: Sequence[ModelSource],
        *,
        device: DeviceChoice,
        keep_versions: int,
        make_batcher: Callable[[LoadedModel], Batcher],
        observer: RepositoryObserver = RepositoryObserver(),
        warm_up_sizes: tuple[int, ...] = (1, 8),
        drain_timeout_s: float = 30.0,
        loader: Callable[[str, int, Path, DeviceChoice], LoadedModel] = load_model,
    ):
        self._models = {s.name: _ModelState(s.name, s.base_path) for s in sources}
        self._device = device
        self._keep = keep_versions
        self._make_batcher = make_batcher
        self._observer = observer
        self._warm_up_sizes = warm_up_sizes
        self._drain_timeout_s = drain_timeout_s
        self._loader = loader
        self._load_executor = ThreadPoolExecutor(1, thread_name_prefix="model-loader")
        for name in self._models:
            observer.default_version(name, device.kind, 0)

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

    @property
    def device(self) -> DeviceChoice:
        return self._device

    @property
    def ready(self) -> bool:
        """Every configured model has a version that answers."""
        return all(state.latest is not None for state in self._models.values())

    def _state(self, name: str) -> _ModelState:
        state = self._models.get(name)
        if state is None:
            raise ModelNotFound(name, available=self.model_names)
        return state

    def resolve(self, name: str, version: int | None = None) -> ServedVersion:
        """The version to answer with (latest when `version` is None). Raises NotFound/Unavailable."""
        state = self._state(name)
        if version is None:
            if state.latest is None:
                reason = "no version loaded yet"
                errors = [s for s in self.statuses(name) if s.error]
                if state.scan_problem:
                    reason += f" ({state.scan_problem})"
                elif state.settling:
                    reason += f" (version {max(state.settling)} is still being written)"
                elif errors:
                    reason += f" (version {errors[0].version} failed to load; see the server log)"
                raise ModelUnavailable(name, reason)
            return state.latest
        served = state.served.get(version)
        if served is None:
            raise ModelNotFound(name, version, available=sorted(state.served))
        return served

    def loaded_versions(self, name: str) -> list[int]:
        return sorted(self._state(name).served)

    def statuses(self, name: str) -> list[VersionStatus]:
        """Every version seen since start, newest first (for TF Serving's GetModelStatus)."""
        state = self._state(name)
        return [state.statuses[v] for v in sorted(state.statuses, reverse=True)]

    async def poll_once(self) -> None:
        for state in self._models.values():
            try:
                await self._sync(state)
            except Exception:
                log.exception("model %s: poll of %s failed", state.name, state.base_path)

    def _report_scan_problem(self, state: _ModelState, problem: str) -> None:
        """Logged once per new problem (not every poll); the gauge says it all the time."""
        self._observer.versions_on_disk(state.name, 0)
        if problem != state.scan_problem:
            log.error("model %s: %s; keeping versions %s", state.name, problem, sorted(state.served))
        state.scan_problem = problem

    async def _sync(self, state: _ModelState) -> None:
        try:
            on_disk = scan_versions(state.base_path)
        except OSError as exc:
            self._report_scan_problem(state, f"cannot list {state.base_path}: {exc.strerror or exc}")
            return
        if not on_disk:  # emptied (or a volume mounted empty): nothing to load, nothing to unload
            self._report_scan_problem(state, f"no version directory with a SavedModel in {state.base_path}")
            return
        self._observer.versions_on_disk(state.name, len(on_disk))
        if state.scan_problem:
            log.info("model %s: base path %s holds versions %s again", state.name, state.base_path, sorted(on_disk))
        state.scan_problem = None
        state.settling = {v: files for v, files in state.settling.items() if v in on_disk}
        skip: set[int] = set()  # not loadable at this scan
        while True:
            for version in [v for v in state.failed if v in on_disk]:
                if fingerprint(on_disk[version]) != state.failed[version]:
                    del state.failed[version]  # files changed: worth another try
            candidates = sorted((v for v in on_disk if v not in state.failed and v not in skip), reverse=True)
            wanted = candidates[: self._keep]
            missing = [v for v in wanted if v not in state.served]
            if not missing:
                break
            if not await self._try_load(state, missing[0], on_disk[missing[0]]):
                skip.add(missing[0])
        if any(v in state.served for v in wanted):  # never unload the last thing we can serve
            for version in [v for v in state.served if v not in wanted]:
                await self._unload(state, version)

    async def _try_load(self, state: _ModelState, version: int, path: Path) -> bool:
        """Serves `version` (True), or finds it still being written or broken (False)."""
        before = fingerprint(path)
        previous = state.settling.get(version)
        if previous is not None and before != previous:
            state.settling[version] = before
            log.info("model %s: version %d is still being written; looking again at the next scan", state.name, version)
            return False
        state.statuses[version] = VersionStatus(version, VersionState.LOADING)
        log.info("model %s: loading version %d from %s", state.name, version, path)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(self._load_executor, self._load_and_warm_up, state.name, version, path)
        after = fingerprint(path)
        if after != before or (isinstance(outcome, Exception) and previous is None):
            # Loaded from moving files, or failed on files not seen at the previous scan: maybe half-copied.
            if not isinstance(outcome, Exception):
                outcome.unload()
            state.settling[version] = after
            state.statuses[version] = VersionStatus(version, VersionState.START)
            why = _describe(outcome) if isinstance(outcome, Exception) else "its files changed while loading"
            log.info(
                "model %s: version %d not served yet (%s); its files may still be being written: looking "
                "again at the next scan",
                state.name,
                version,
                why,
            )
            return False
        state.settling.pop(version, None)
        if isinstance(outcome, Exception):  # on the same files as at the previous scan: broken
            self._reject(state, version, after, outcome)
            return False
        self._serve(state, version, outcome, time.perf_counter() - started)
        return True

    def _reject(self, state: _ModelState, version: int, files: tuple, exc: Exception) -> None:
        message = _describe(exc)
        state.failed[version] = files
        state.statuses[version] = VersionStatus(version, VersionState.END, message)
        self._observer.load_failed(state.name)
        log.error(
            "model %s: version %d rejected, still serving %s: %s",
            state.name,
            version,
            sorted(state.served) or "nothing",
            message,
            exc_info=None if isinstance(exc, ModelLoadError) else exc,
        )

    def _serve(self, state: _ModelState, version: int, model: LoadedModel, seconds: float) -> None:
        state.served[version] = ServedVersion(model, self._make_batcher(model))
        state.statuses[version] = VersionStatus(version, VersionState.AVAILABLE)
        self._publish_latest(state)
        self._observer.version_loaded(state.name, version, model.runtime_name, seconds)
        log.info(
            "model %s: version %d available after %.2fs on %s, runtime %s (classes: %d); default version now %d",
            state.name,
            version,
            seconds,
            self._device.kind,
            model.runtime_name,
            len(model.class_names),
            state.latest.model.version if state.latest else version,
        )

    def _load_and_warm_up(self, name: str, version: int, path: Path) -> LoadedModel | Exception:
        """The warmed-up model, or why it failed (returned: the caller judges the files first)."""
        try:
            model = self._loader(name, version, path, self._device)
            model.warm_up(self._warm_up_sizes)
        except Exception as exc:
            return exc
        return model

    async def _unload(self, state: _ModelState, version: int) -> None:
        served = state.served.pop(version)
        self._publish_latest(state)  # from here no new request can pick this version
        state.statuses[version] = VersionStatus(version, VersionState.UNLOADING)
        await served.batcher.close(self._drain_timeout_s)  # accepted requests finish on it
        self._forget_runtime(state.name, served.model)
        served.model.unload()
        state.statuses[version] = VersionStatus(version, VersionState.END)
        log.info("model %s: version %d unloaded", state.name, version)

    def _forget_runtime(self, name: str, model: LoadedModel) -> None:
        self._observer.version_unloaded(name, model.version, model.runtime_name)

    def _publish_latest(self, state: _ModelState) -> None:
        state.latest = state.served[max(state.served)] if state.served else None
        current = state.latest.model.version if state.latest else 0
        self._observer.default_version(state.name, self._device.kind, current)

    async def close(self, timeout_s: float) -> None:
        """Finishes accepted work on every version (up to timeout_s), then unloads everything."""
        for state in self._models.values():
            served, state.served = state.served, {}
            self._publish_latest(state)
            await asyncio.gather(*(s.batcher.close(timeout_s) for s in served.values()))
            for version, item in served.items():
                self._forget_runtime(state.name, item.model)
                item.model.unload()
                state.statuses[version] = VersionStatus(version, VersionState.END)
        self._load_executor.shutdown(wait=False, cancel_futures=True)
