"""`mnist-server` / `python -m mnist_server`: parse settings, run, exit with a meaningful code."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from .config import ConfigError, parse_settings
from .logs import configure_logging
from .security import validate_security_settings

log = logging.getLogger("mnist_server")


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(argv)
        validate_security_settings(settings)  # the files behind the TLS and token flags: security's own checks
    except ConfigError as exc:
        print(f"mnist-server: error: {exc}", file=sys.stderr)
        return 2
    quiet_tensorflow(settings.log_level)
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


def quiet_tensorflow(log_level: str) -> None:
    """TensorFlow's C++ log, read once when TensorFlow is imported: on a machine without a GPU, the
    CUDA probe behind `--device auto` logs `failed call to cuInit ... (303)` at ERROR level, and
    only TF_CPP_MIN_LOG_LEVEL=3 hides that. It changes no behaviour (a GPU is still found and used),
    and failures that matter reach our own log as TensorFlow's Python exceptions. --log-level DEBUG,
    or the variable set in the environment, shows TensorFlow's C++ log again."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if log_level == "DEBUG" else "3")


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
