"""Calls made while the server restarts wait for it and succeed: no error reaches the caller."""

from __future__ import annotations

import threading

import numpy as np

from mnist_client import ClientError, MnistClient
from tests.support.server_process import ServerProcess
from tests.support.synthetic import synthetic_arrays

CALLERS = 4
CALLS_AFTER_RESTART = 20
RESTART_DEADLINE_S = 90  # a restart (Python + TensorFlow start, model load) fits in one call's deadline


class Callers:
    """Threads calling classify in a loop, recording successes per phase and every error."""

    def __init__(self, target: str, images: np.ndarray) -> None:
        self.target, self.images = target, images
        self.ok = 0
        self.errors: list[ClientError] = []
        self.wrong: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.progress = threading.Condition(self.lock)
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CALLERS)]

    def _run(self) -> None:
        with MnistClient(self.target, timeout=RESTART_DEADLINE_S) as client:
            expected = [p.label for p in client.classify(self.images)]
            while not self.stop.is_set():
                try:
                    labels = [p.label for p in client.classify(self.images)]
                except ClientError as error:
                    with self.lock:
                        self.errors.append(error)
                    continue
                with self.progress:
                    self.ok += 1
                    if labels != expected:
                        self.wrong.append(f"{labels} != {expected}")
                    self.progress.notify_all()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop_and_join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=RESTART_DEADLINE_S)

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.progress:
            return self.progress.wait_for(lambda: self.ok >= count or self.errors, timeout)


def test_client_rides_through_a_server_restart(exported_model):
    flags = ["--model-dir", str(exported_model)]
    with ServerProcess(flags) as first:
        callers = Callers(first.target, synthetic_arrays(8, seed=2)[0])
        callers.start()
        try:
            assert callers.wait_for(CALLS_AFTER_RESTART, timeout=60), "no calls before the restart"
            assert first.terminate() == 0  # SIGTERM: drains, exits
            before = callers.ok
            second = ServerProcess(flags, wait_ready=False)
            second.port, second.http_port = first.port, first.http_port  # same address
            with second:
                second.wait_until_ready(RESTART_DEADLINE_S)
                assert callers.wait_for(before + CALLS_AFTER_RESTART, timeout=RESTART_DEADLINE_S), (
                    f"calls did not resume after the restart; errors: {callers.errors[:3]}"
                )
                callers.stop_and_join()  # while the server still answers
        finally:
            callers.stop_and_join()
    assert callers.errors == [], f"{len(callers.errors)} errors surfaced, e.g. {callers.errors[:3]}"
    assert callers.wrong == []
    assert callers.ok >= before + CALLS_AFTER_RESTART
