"""What a load run does (``BenchConfig``) and the request payloads it sends."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

from mnist_client.channel import DEFAULT_TIMEOUT, TlsConfig
from mnist_client.requests import build_request
from mnist_serving.images import SIDE
from mnist_serving.v1 import classifier_pb2 as pb

Encoding = Literal["packed", "pixels", "png"]
DISTINCT_PAYLOADS = 64  # requests cycle through this many distinct payloads
RANDOM_IMAGES = 1024
DEFAULT_DURATION_S = 10.0


@dataclass(frozen=True)
class BenchConfig:
    """One load run. Closed loop (``rate=None``): ``concurrency`` callers each send a request as
    soon as the last one answered. Open loop: ``rate`` requests/s on a fixed schedule, at most
    ``concurrency`` in flight; a request's latency counts from its scheduled time, so a server
    that falls behind shows it. Ends after ``duration`` seconds or ``requests`` requests
    (measured after ``warmup`` seconds)."""

    target: str
    concurrency: int = 8
    duration: float | None = None  # default: DEFAULT_DURATION_S unless requests is given
    requests: int | None = None
    batch: int = 1
    rate: float | None = None
    stream: bool = False
    warmup: float = 1.0
    processes: int = 1
    connections: int = 1
    encoding: Encoding = "packed"
    timeout: float = DEFAULT_TIMEOUT
    tls: TlsConfig | None = None
    token: str | None = None
    model: str = ""
    images_source: str = "random"

    def __post_init__(self) -> None:
        if self.duration is None and self.requests is None:
            object.__setattr__(self, "duration", DEFAULT_DURATION_S)
        if self.duration is not None and self.requests is not None:
            raise ValueError("give duration or requests, not both")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration must be positive, got {self.duration}")
        if self.requests is not None and self.requests < 1:
            raise ValueError(f"requests must be at least 1, got {self.requests}")
        for name in ("concurrency", "batch", "processes", "connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.warmup < 0:
            raise ValueError(f"warmup must not be negative, got {self.warmup}")
        if self.rate is None and self.processes > self.concurrency:
            raise ValueError(
                f"closed loop: processes ({self.processes}) cannot exceed concurrency ({self.concurrency})"
            )

    @property
    def mode(self) -> str:
        return "closed" if self.rate is None else "open"


@dataclass(frozen=True)
class WorkerPlan:
    """One worker process's share of a run (picklable: sent to a spawned process)."""

    index: int
    config: BenchConfig
    concurrency: int
    rate: float | None
    requests: int | None
    payloads: list[bytes] = field(repr=False)


def random_digits(count: int = RANDOM_IMAGES, seed: int = 0) -> np.ndarray:
    """uint8 [count, 28, 28] images with random strokes (no dataset needed)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, SIDE, SIDE), np.uint8)
    for image in images:
        rows, cols = rng.integers(4, 24, size=(2, 12))
        for r, c in zip(rows, cols):
            image[r : r + 3, c : c + 3] = rng.integers(128, 256)
    return images


def build_payloads(
    images: np.ndarray, batch: int, encoding: Encoding, model: str = "", distinct: int = DISTINCT_PAYLOADS
) -> list[bytes]:
    """Serialized ``ClassifyRequest`` messages of ``batch`` images each, cycling through ``images``."""
    spec = pb.ModelSpec(name=model) if model else None
    payloads = []
    for k in range(distinct):
        indices = (np.arange(batch) + k * batch) % len(images)
        chunk = images[indices]
        if encoding == "packed":
            request = build_request(chunk, spec)
        elif encoding == "pixels":
            request = build_request(list(chunk), spec)
        else:
            request = build_request([_png(image) for image in chunk], spec)
        payloads.append(request.SerializeToString())
    return payloads


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal integers."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def plans(config: BenchConfig, payloads: list[bytes]) -> list[WorkerPlan]:
    shares = (
        split(config.concurrency, config.processes)
        if config.rate is None
        else [max(1, c) for c in split(config.concurrency, config.processes)]
    )
    quotas = split(config.requests, config.processes) if config.requests else [None] * config.processes
    rate = None if config.rate is None else config.rate / config.processes
    return [
        WorkerPlan(index=i, config=config, concurrency=shares[i], rate=rate, requests=quotas[i], payloads=payloads)
        for i in range(config.processes)
    ]
