"""Polling until something happens, bounded in time, for the integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], object],
    what: str,
    timeout_s: float,
    every_s: float = 0.01,
    context: Callable[[], str] | None = None,
) -> None:
    """Calls `condition` every `every_s` seconds until it is true. After `timeout_s`, fails saying that
    `what` did not happen, followed by `context()` (a server's log, say) when given."""
    give_up = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= give_up:
            detail = f":\n{context()}" if context else ""
            raise AssertionError(f"{what} did not happen within {timeout_s}s{detail}")
        time.sleep(every_s)
