"""InProcessServer: the real ModelServer (every adapter, the core, the batchers, gRPC and HTTP)
serving the fake model (fake_model.py) inside the test process, on free loopback ports.

    with InProcessServer(["--max-batch-size", "64"]) as server:
        channel = grpc.insecure_channel(server.target)      # server.http_url for HTTP
        ...

It runs on its own asyncio event loop in a background thread (grpc.aio and aiohttp share it, as in
`mnist-server`), starts in well under a second, sets up no TensorFlow and loads no model, and
drains on exit as SIGTERM would. Flags are `mnist-server`'s (parsed by the real parse_settings,
without the environment); the base path holds fake versions (default: version 1 of model `mnist`).
What needs the real process (signals, exit codes, TensorFlow/LiteRT numerics, real exports on disk)
stays with ServerProcess (server_process.py).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mnist_server.app import ModelServer
from mnist_server.config import Settings, parse_settings
from tests.support.fake_model import fake_loader, write_fake_versions
from tests.support.server_process import HOST, free_port


class InProcessServer:
    def __init__(
        self,
        flags: list[str] | tuple[str, ...] = (),
        *,
        versions: tuple[int, ...] = (1,),
        base_path: Path | None = None,
        loader: Callable | None = None,
        ready_timeout: float = 10.0,
    ):
        self.flags = list(flags)
        self.versions = versions
        self.base_path = base_path
        self.loader = loader
        self.ready_timeout = ready_timeout
        self.port = free_port()
        self.http_port = free_port()
        while self.http_port == self.port:
            self.http_port = free_port()
        self.settings: Settings | None = None
        self.server: ModelServer | None = None
        self._tmp: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"{'https' if '--tls-cert' in self.flags else 'http'}://{HOST}:{self.http_port}"

    def __enter__(self) -> InProcessServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        if self.base_path is None:
            self._tmp = tempfile.mkdtemp(prefix="inprocess-models-")
            self.base_path = write_fake_versions(Path(self._tmp) / "mnist", self.versions)
        self.settings = parse_settings(
            [
                "--model-dir",
                str(self.base_path),
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--http-port",
                str(self.http_port),
                *self.flags,
            ],
            environ={},
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="inprocess-server", daemon=True)
        self._thread.start()
        try:
            self.run(self._start(), timeout=self.ready_timeout + 5)
        except BaseException:
            try:
                self.stop()
            except Exception:  # noqa: S110 - the failure to start is the one to report
                pass
            raise

    def run(self, coroutine, timeout: float = 30.0):
        """Runs `coroutine` on the server's event loop (from the test's thread); returns its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _start(self) -> ModelServer:
        self.server = server = ModelServer(self.settings, loader=self.loader or fake_loader())
        await server.start()
        deadline = time.monotonic() + self.ready_timeout
        while not server.core.ready:  # the first poll loads the versions (a few ms for the fake)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"in-process server not ready within {self.ready_timeout}s: "
                    f"{[server.core.version_statuses(name) for name in server.core.model_names]}"
                )
            await asyncio.sleep(0.005)
        return server

    def stop(self) -> None:
        """Drains (as on SIGTERM), stops the loop and its thread, removes the fake versions."""
        if self._loop is not None:
            if self.server is not None:
                try:
                    self.run(self.server.drain(), timeout=self.settings.grace_period_s + 30)
                finally:
                    self.server = None
                    self.run(_cancel_leftover_tasks())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            if not self._thread.is_alive():
                self._loop.close()
            self._loop = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


async def _cancel_leftover_tasks() -> None:
    """What asyncio.run does before it closes a loop (a real server's exit does so): tasks still
    pending (an idle keep-alive connection's handler) are cancelled and awaited, not destroyed."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
