"""SIGTERM in the middle of sustained load, then a restart on the same port while the callers keep
going: nothing accepted is lost, refusals are clean, and callers using the client library's
retries see no failed call at all.

Two kinds of callers run together:
- library callers (MnistClient, its default retries and health checking): must never fail;
- raw callers (bare stub: no retry, no waiting): show what the server itself answers during the
  drain - a right answer, or UNAVAILABLE for a call it never took - never anything else.
"""

from __future__ import annotations

import threading
from collections import Counter

import grpc

from mnist_client import ClientError, MnistClient
from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.server_process import ServerProcess, metric, scrape_metrics
from tests.support.synthetic import synthetic_arrays
from tests.support.waiting import wait_until

LIBRARY_CALLERS = 4
RAW_CALLERS = 3
IMAGES = 16
RESTART_S = 120  # a fresh server (Python, TensorFlow, model load) comes up well within this


class Load:
    def __init__(self, target: str):
        self.images, _ = synthetic_arrays(IMAGES, seed=71)
        with MnistClient(target) as client:
            self.expected = [p.label for p in client.classify(self.images)]
        self.target = target
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.library = Counter()  # outcome -> count, library callers
        self.raw = Counter()  # outcome -> count, raw callers
        self.phase = "before"  # which server answered a library call: before / after the restart
        self.by_phase = Counter()
        self.threads = [threading.Thread(target=self._library_caller, daemon=True) for _ in range(LIBRARY_CALLERS)]
        self.threads += [threading.Thread(target=self._raw_caller, daemon=True) for _ in range(RAW_CALLERS)]
        for thread in self.threads:
            thread.start()

    def _record(self, counter: Counter, outcome: str) -> None:
        with self.lock:
            counter[outcome] += 1
            if counter is self.library and outcome == "OK":
                self.by_phase[self.phase] += 1

    def _library_caller(self) -> None:
        with MnistClient(self.target, timeout=RESTART_S) as client:
            for _ in range(1_000_000):  # bounded; stopped long before
                if self.stop.is_set():
                    return
                try:
                    labels = [p.label for p in client.classify(self.images)]
                    self._record(self.library, "OK" if labels == self.expected else "WRONG")
                except ClientError as error:
                    self._record(self.library, f"{error.code.name}: {error.details}")

    def _raw_caller(self) -> None:
        request = pb.ClassifyRequest(
            packed=pb.PackedImages(data=self.images.tobytes(), count=IMAGES, height=28, width=28)
        )
        with grpc.insecure_channel(self.target) as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            for _ in range(1_000_000):
                if self.stop.is_set():
                    return
                try:
                    labels = [p.label for p in stub.Classify(request, timeout=30).predictions]
                    self._record(self.raw, "OK" if labels == self.expected else "WRONG")
                except grpc.RpcError as error:
                    self._record(self.raw, error.code().name)
                    if error.code() is grpc.StatusCode.UNAVAILABLE:
                        return  # refused: this caller's part is over

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(RESTART_S)


def test_sigterm_under_load_then_restart_loses_nothing(exported_model):
    flags = ["--model-dir", str(exported_model), "--max-batch-size", "8"]  # more model calls: a longer drain
    first = ServerProcess(flags)
    with first:
        load = Load(first.target)
        try:
            wait_until(lambda: load.library["OK"] >= 20 and load.raw["OK"] >= 10, "sustained load", 60)
            wait_until(
                lambda: metric(scrape_metrics(first.http_url), "mnist_serving_inflight_requests") >= 3,
                "calls in flight",
                30,
            )
            assert first.terminate(timeout=60) == 0  # SIGTERM mid-load: drained, exit code 0
            wait_until(lambda: load.raw["UNAVAILABLE"] == RAW_CALLERS, "every raw caller refused", 30)
            with load.lock:
                load.phase = "after"
            second = ServerProcess(flags, wait_ready=False)
            second.port, second.http_port = first.port, first.http_port  # the same address
            with second:
                second.wait_until_ready(RESTART_S)
                wait_until(lambda: load.by_phase["after"] >= 20, "calls served by the restarted server", RESTART_S)
                load.finish()
                assert second.terminate(timeout=60) == 0
        finally:
            load.finish()
    print(f"\nlibrary callers: {dict(load.library)} ({dict(load.by_phase)}); raw callers: {dict(load.raw)}")
    assert set(load.library) == {"OK"}, load.library  # zero failed calls with the client's retries
    assert load.by_phase["before"] > 0 and load.by_phase["after"] >= 20
    # accepted: answered right; new: refused cleanly - UNAVAILABLE, or CANCELLED for a call that reached
    # the server as it closed, before any handler took it (gRPC core, grpc/grpc#41785; as in
    # test_server_shutdown): at most one such call per raw caller
    assert set(load.raw) <= {"OK", "UNAVAILABLE", "CANCELLED"}, load.raw
    assert load.raw["CANCELLED"] <= RAW_CALLERS, load.raw
    log = first.log_text()
    assert "received SIGTERM" in log and "stopped" in log
    assert "unexpected error" not in log and "unexpected error" not in second.log_text()
