"""The load tester's parts: run settings, payloads, per-worker bookkeeping, the merged report."""

from __future__ import annotations

from array import array

import grpc
import numpy as np
import pytest

from mnist_client.bench import BenchConfig, format_result, random_digits
from mnist_client.bench.config import build_payloads, plans, split
from mnist_client.bench.recorder import Recorder
from mnist_client.bench.report import summarize
from mnist_serving.v1 import classifier_pb2 as pb


def test_duration_defaults_to_ten_seconds_and_excludes_requests():
    assert BenchConfig("t").duration == 10.0
    assert BenchConfig("t", requests=50).duration is None
    with pytest.raises(ValueError, match="not both"):
        BenchConfig("t", duration=1, requests=5)


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        (dict(concurrency=0), "concurrency must be at least 1"),
        (dict(batch=0), "batch must be at least 1"),
        (dict(rate=0), "rate must be positive"),
        (dict(duration=-1), "duration must be positive"),
        (dict(warmup=-1), "warmup must not be negative"),
        (dict(concurrency=2, processes=3), "cannot exceed concurrency"),
    ],
)
def test_bad_settings_are_refused(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        BenchConfig("t", **kwargs)


def test_open_loop_may_use_more_processes_than_concurrency():
    assert BenchConfig("t", concurrency=1, processes=2, rate=100).mode == "open"


def test_work_is_split_evenly_across_processes():
    assert split(10, 3) == [4, 3, 3]
    config = BenchConfig("t", concurrency=5, processes=2, requests=7)
    worker_plans = plans(config, [b"x"])
    assert [p.concurrency for p in worker_plans] == [3, 2]
    assert [p.requests for p in worker_plans] == [4, 3]
    assert all(p.rate is None for p in worker_plans)
    open_plans = plans(BenchConfig("t", concurrency=4, processes=2, rate=300), [b"x"])
    assert [p.rate for p in open_plans] == [150, 150]


@pytest.mark.parametrize("encoding", ["packed", "pixels", "png"])
def test_payloads_hold_batch_images_each(encoding):
    images = random_digits(10)
    payloads = build_payloads(images, batch=4, encoding=encoding, model="fashion", distinct=3)
    assert len(payloads) == 3
    requests = [pb.ClassifyRequest.FromString(p) for p in payloads]
    assert all(r.model.name == "fashion" for r in requests)
    if encoding == "packed":
        assert [r.packed.count for r in requests] == [4, 4, 4]
        # images cycle: the third request holds images 8, 9, 0, 1
        assert requests[2].packed.data == images[[8, 9, 0, 1]].tobytes()
    else:
        assert [len(r.images) for r in requests] == [4, 4, 4]
        field = "pixels" if encoding == "pixels" else "encoded"
        assert all(r.images[0].WhichOneof("data") == field for r in requests)


def test_random_digits_are_varied_uint8_images():
    images = random_digits(20)
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    assert len({image.tobytes() for image in images}) == 20


def test_recorder_measures_only_after_warm_up_and_counts_errors():
    counters = [0, 0, 0, 0]
    recorder = Recorder(warm_end=10.0, end=20.0, quota=None, counters=counters, slot=1)
    assert recorder.may_send(19.9) and not recorder.may_send(20.0)
    warm = recorder.begin(5.0)
    recorder.finish(warm, 5.0, grpc.StatusCode.OK)
    measured = recorder.begin(10.5)
    recorder.finish(measured, 10.5, grpc.StatusCode.OK)
    failed = recorder.begin(11.0)
    recorder.finish(failed, 11.0, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert (warm, measured, failed) == (False, True, True)
    assert counters == [0, 0, 2, 1]  # slot 1: two answered, one failed
    assert len(recorder.latencies) == 1 and recorder.errors == {"RESOURCE_EXHAUSTED": 1}
    assert recorder.started == 2 and recorder.sent == 3


def test_recorder_in_count_mode_stops_after_the_quota():
    recorder = Recorder(warm_end=1.0, end=None, quota=2, counters=[0, 0], slot=0)
    assert recorder.may_send(0.5)  # warm-up never uses the quota
    recorder.begin(0.5)
    for when in (1.5, 2.0):
        assert recorder.may_send(when)
        recorder.begin(when)
    assert not recorder.may_send(2.5)


def _worker(latencies_s, errors, warm_end=100.0, last_end=102.0, sent=None):
    return {
        "latencies": array("d", latencies_s).tobytes(),
        "errors": errors,
        "measured": len(latencies_s) + sum(errors.values()),
        "sent": sent or len(latencies_s),
        "last_end": last_end,
        "warm_end": warm_end,
        "cpu_s": 0.5,
    }


def test_summary_merges_workers():
    config = BenchConfig("host:1", concurrency=4, processes=2, batch=8, duration=2)
    first = _worker([0.001 * i for i in range(1, 101)], {"UNAVAILABLE": 2})
    second = _worker([0.050] * 100, {"UNAVAILABLE": 1, "DEADLINE_EXCEEDED": 4}, last_end=104.0)
    result = summarize(config, [first, second])
    assert result["requests"] == {"ok": 200, "failed": 7, "total": 207}
    assert result["errors"] == {"DEADLINE_EXCEEDED": 4, "UNAVAILABLE": 3}
    assert result["elapsed_s"] == pytest.approx(4.0)
    assert result["requests_per_s"] == pytest.approx(50.0)
    assert result["images_per_s"] == pytest.approx(400.0)
    latency = result["latency_ms"]
    assert latency["max"] == pytest.approx(100.0)
    assert latency["p50"] == pytest.approx(50.0)
    assert latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert result["client_cpu_us_per_request"] == pytest.approx(1e6 * 1.0 / 200)
    assert result["config"]["mode"] == "closed" and "token" not in result["config"]
    text = format_result(result)
    assert "200 ok, 7 failed" in text and "UNAVAILABLE 3" in text and "p99" in text


def test_summary_of_a_run_where_everything_failed():
    config = BenchConfig("host:1", duration=1)
    result = summarize(config, [_worker([], {"UNAVAILABLE": 9})])
    assert result["requests_per_s"] == 0.0 and result["latency_ms"]["p50"] is None
    assert "p50" not in format_result(result)
