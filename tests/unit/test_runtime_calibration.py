"""`--runtime auto`'s switch from LiteRT to TensorFlow, measured at load (runtimes.calibrate), against
runtimes whose cost per call is known: a fixed part plus a part per image, slept."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mnist_server import runtimes


class SleepingRuntime:
    def __init__(self, fixed_s: float, per_image_s: float, slow_calls: tuple[int, ...] = ()):
        self.fixed_s, self.per_image_s, self.slow_calls = fixed_s, per_image_s, slow_calls
        self.calls = 0

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        self.calls += 1
        busy = 0.02 if self.calls in self.slow_calls else 0.0  # a moment of contention
        time.sleep(self.fixed_s + self.per_image_s * len(images) + busy)
        return {}


def test_the_switch_lands_below_the_first_size_tensorflow_wins():
    # LiteRT 40 us an image; TensorFlow 2 ms a call + 10 us an image: they cross near 67 images
    # (76 with the margin), so 64 is LiteRT's last size and 128 TensorFlow's first.
    litert, tensorflow = SleepingRuntime(0.0, 40e-6), SleepingRuntime(2e-3, 10e-6)
    litert_max, timings = runtimes.calibrate(litert, tensorflow, max_batch=256)
    assert litert_max == 64
    assert list(timings) == [16, 32, 64, 128]  # it stops at the first size TensorFlow wins
    assert timings[128][0] > runtimes.CALIBRATION_MARGIN * timings[128][1]


def test_litert_keeps_every_size_up_to_the_largest_batch_when_it_never_loses():
    litert, tensorflow = SleepingRuntime(0.0, 1e-6), SleepingRuntime(1e-3, 5e-6)
    litert_max, timings = runtimes.calibrate(litert, tensorflow, max_batch=200)
    assert litert_max == 200 and list(timings) == [16, 32, 64, 128, 200]  # the largest batch, and none above


def test_tensorflow_faster_from_the_first_size_leaves_litert_the_smallest_batches():
    litert, tensorflow = SleepingRuntime(3e-3, 50e-6), SleepingRuntime(0.0, 5e-6)
    assert runtimes.calibrate(litert, tensorflow, max_batch=256)[0] == runtimes.CALIBRATION_BATCHES[0] // 2


def test_a_busy_moment_during_the_timing_does_not_move_the_switch():
    # LiteRT's 2nd to 4th calls (timed ones at 16 images) each take 20 ms more: the fastest call counts.
    litert = SleepingRuntime(0.0, 1e-6, slow_calls=(2, 3, 4))
    tensorflow = SleepingRuntime(1e-3, 5e-6)
    assert runtimes.calibrate(litert, tensorflow, max_batch=64)[0] == 64


def test_batches_beyond_the_largest_size_timed_follow_it():
    litert, tensorflow = SleepingRuntime(0.0, 1e-7), SleepingRuntime(1e-3, 5e-7)
    litert_max, timings = runtimes.calibrate(litert, tensorflow, max_batch=5000)
    assert litert_max == 5000 and max(timings) == runtimes.CALIBRATION_BATCHES[-1]


@pytest.mark.parametrize("max_batch", [1, 8])
def test_a_largest_batch_below_the_ladder_is_timed_as_it_is(max_batch):
    litert, tensorflow = SleepingRuntime(0.0, 1e-6), SleepingRuntime(1e-3, 5e-6)
    litert_max, timings = runtimes.calibrate(litert, tensorflow, max_batch=max_batch)
    assert litert_max == max_batch and list(timings) == [max_batch]
