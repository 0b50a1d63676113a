"""One batch's model call and its outputs, for the batcher: the call runs (and is timed) on the
thread that computes; its outputs (an array, a sequence, or a dict of arrays, each of the batch's
leading length) are checked, sliced back per request, or joined from the parts of a split request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .errors import BatcherClosed


def output_length(outputs: Any) -> int:
    if isinstance(outputs, Mapping):
        lengths = {len(value) for value in outputs.values()}
        if len(lengths) != 1:
            raise ValueError(f"outputs have different leading lengths {sorted(lengths)}")
        return lengths.pop()
    return len(outputs)


def slice_outputs(outputs: Any, start: int, stop: int) -> Any:
    if isinstance(outputs, Mapping):
        return {name: value[start:stop] for name, value in outputs.items()}
    return outputs[start:stop]


def concat_outputs(parts: list) -> Any:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], Mapping):
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [item for part in parts for item in part]


def run_model(predict_fn: Callable[[np.ndarray], Any], parts: list[np.ndarray]) -> tuple:
    """On the thread that computes: one model call on the concatenated parts, timed there (so the
    compute time is the call's own, never a wait for a thread), its outputs' length checked.
    Returns (outputs, None, seconds in the model) or (None, the failure, seconds)."""
    inputs = parts[0] if len(parts) == 1 else np.concatenate(parts)
    started = time.perf_counter()
    try:
        outputs = predict_fn(inputs)
        compute_s = time.perf_counter() - started
        if output_length(outputs) != len(inputs):
            raise ValueError(f"predict returned {output_length(outputs)} results for {len(inputs)} items")
        return outputs, None, compute_s
    except Exception as exc:
        return None, exc, time.perf_counter() - started


def worker_result(future: asyncio.Future) -> tuple[Any, Exception | None, float]:
    if future.cancelled():  # the executor shut down before running it
        return None, BatcherClosed(), 0.0
    exc = future.exception()
    if exc is None:
        return future.result()
    return None, exc if isinstance(exc, Exception) else BatcherClosed(), 0.0
