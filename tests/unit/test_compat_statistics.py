"""Per-version statistics (KServe ModelStatistics) fed by the real Batcher with a fake model, and
the --version-labels flag."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mnist_server.batcher import Batcher, BatchObserver
from mnist_server.config import ConfigError, VersionLabel, parse_settings
from mnist_server.errors import ModelFailure
from mnist_server.statistics import StatisticsBook


class Recorder(BatchObserver):
    def __init__(self):
        self.calls = []

    def batch_finished(self, images, compute_s, ok, queue_waits_s=None):
        self.calls.append((images, ok))


def run(coro):
    return asyncio.run(coro)


async def serve(book: StatisticsBook, predict, requests: list[np.ndarray], *, also=()) -> list:
    batcher = Batcher(
        predict,
        max_batch_size=64,
        batch_timeout_s=0.0,
        max_queue_images=1000,
        executor=None,
        observer=book.observer("mnist", 1, *also),
    )
    try:
        return await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)
    finally:
        await batcher.close(1.0)


def doubled(items: np.ndarray) -> np.ndarray:
    return items * 2


def test_overlapping_batches_count_every_request_once():
    """With two batches computing at once, each batch's finish is paired with its own start."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    both_started = threading.Barrier(2, timeout=10)

    def slow_doubled(items):
        if len(items) == 2:  # the first two batches (2 images each) wait for each other: they overlap
            both_started.wait()
        return items * 2

    async def scenario(book):
        with ThreadPoolExecutor(2) as pool:
            batcher = Batcher(
                slow_doubled,
                max_batch_size=2,
                batch_timeout_s=0.0,
                max_queue_images=100,
                executor=pool,
                observer=book.observer("mnist", 1),
                max_concurrent_batches=2,
            )
            requests = [np.ones((1, 2)) for _ in range(4)] + [np.ones((1, 2))]
            results = await asyncio.gather(*(batcher.submit(r) for r in requests))
            await batcher.close(1.0)
        return results

    book = StatisticsBook()
    assert len(run(scenario(book))) == 5
    stats = book.get("mnist", 1)
    assert (stats.success.count, stats.queue.count, stats.compute_infer.count) == (5, 5, 5)
    assert stats.inference_count == 5 and stats.fail.count == 0


def test_counts_follow_requests_images_and_batches():
    book, recorder = StatisticsBook(wall_clock=lambda: 1234.5), Recorder()
    results = run(serve(book, doubled, [np.ones((3, 2)), np.ones((1, 2)), np.ones((2, 2))], also=(recorder,)))
    assert all(isinstance(r, np.ndarray) for r in results)
    stats = book.get("mnist", 1)
    assert stats.inference_count == 6
    assert stats.success.count == 3 and stats.fail.count == 0
    assert stats.queue.count == 3
    assert stats.compute_infer.count == 3  # per request, like Triton
    assert stats.execution_count == len(recorder.calls) == sum(d.count for d in stats.batches.values())
    assert sum(size * d.count for size, d in stats.batches.items()) == 6
    assert stats.success.ns >= stats.compute_infer.ns > 0
    assert stats.last_inference_ms == 1234500
    assert recorder.calls  # the teed observer (metrics) still sees every batch


def test_a_request_that_breaks_the_model_fails_alone():
    def predict(items: np.ndarray) -> np.ndarray:
        if (items < 0).any():
            raise RuntimeError("bad input reached the model")
        return items

    book = StatisticsBook()

    async def together():
        batcher = Batcher(
            predict,
            max_batch_size=64,
            batch_timeout_s=0.05,
            max_queue_images=1000,
            executor=None,
            observer=book.observer("mnist", 1),
        )
        try:
            return await asyncio.gather(
                batcher.submit(np.ones((2, 2))),
                batcher.submit(-np.ones((1, 2))),
                batcher.submit(np.ones((1, 2))),
                return_exceptions=True,
            )
        finally:
            await batcher.close(1.0)

    results = run(together())
    assert [type(r) for r in results] == [np.ndarray, ModelFailure, np.ndarray]
    stats = book.get("mnist", 1)
    assert (stats.success.count, stats.fail.count, stats.inference_count) == (2, 1, 3)
    assert 4 in stats.batches  # all three rode in one model call first, which failed
    assert stats.compute_infer.count == 3  # every request once, though that batch was retried


def test_unknown_versions_read_as_zero_and_a_reload_starts_fresh():
    book = StatisticsBook()
    assert book.get("mnist", 7).success.count == 0
    run(serve(book, doubled, [np.ones((1, 2))]))
    assert book.get("mnist", 1).success.count == 1
    book.observer("mnist", 1)
    assert book.get("mnist", 1).success.count == 0


def test_version_labels_flag(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    settings = parse_settings(
        [
            "--model-dir",
            str(tmp_path / "a"),
            "--model",
            f"other={tmp_path / 'b'}",
            "--version-labels",
            "stable=3, canary=4,other:stable=1",
        ],
        environ={},
    )
    assert settings.version_labels == (
        VersionLabel("mnist", "stable", 3),
        VersionLabel("mnist", "canary", 4),
        VersionLabel("other", "stable", 1),
    )
    from_env = parse_settings(["--model-dir", str(tmp_path / "a")], environ={"MNIST_SERVER_VERSION_LABELS": "prod=2"})
    assert from_env.version_labels == (VersionLabel("mnist", "prod", 2),)


@pytest.mark.parametrize(
    "value, message",
    [
        ("stable", "expects LABEL=VERSION"),
        ("stable=0", "positive version"),
        ("stable=x", "expects LABEL=VERSION"),
        ("nope:stable=1", "names model 'nope', which is not served"),
        ("stable=1,stable=2", "gives label 'stable' of model 'mnist' twice"),
    ],
)
def test_bad_version_labels_name_the_problem(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings(["--model-dir", str(tmp_path), "--version-labels", value], environ={})
