"""`mnist-server` / `python -m mnist_server`: parse settings, run, exit with a meaningful code."""
from __future__ import annotations

import asyncio
import logging
import os
import sys

from .config import ConfigError, parse_settings
from .logs import configure_logging

log = logging.getLogger("mnist_server")


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(argv)
    except ConfigError as exc:
        print(f"mnist-server: error: {exc}", file=sys.stderr)
        return 2
    # TensorFlow's C++ start-up chatter (CUDA probing, CPU features) is not ours to show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if settings.log_level == "DEBUG" else "2")
    configure_logging(settings.log_format, settings.log_level)
    from .app import StartupError, serve  # imports TensorFlow
    from .runtime_tensorflow import DeviceUnavailable

    try:
        code = run_event_loop(serve(settings), settings.event_loop)
    except (StartupError, DeviceUnavailable) as exc:
        log.error("cannot start: %s", exc)
        code = 1
    # Every request is answered and the ports are closed; TensorFlow's own teardown at interpreter
    # exit takes seconds and would only delay a rolling restart, so skip it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_event_loop(main_coroutine, kind: str) -> int:
    """asyncio.run on uvloop (grpc.aio runs on any asyncio loop; libuv's costs less per call) or on
    the standard loop."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:  # e.g. on Windows, where uvloop does not exist
            log.warning("uvloop is not installed: using the standard asyncio event loop")
        else:
            return uvloop.run(main_coroutine)
    return asyncio.run(main_coroutine)


if __name__ == "__main__":
    sys.exit(main())
