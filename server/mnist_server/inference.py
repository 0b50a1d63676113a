"""The one entry every protocol adapter calls: validated numpy in, numpy outputs out.

Adapters (our Classifier, TF Serving, KServe v2) only convert their protos to a uint8 array
[N, 28, 28] and back; model choice, limits, deadlines, batching and versions live here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import DeadlineExceeded, InvalidInput, ModelNotFound
from .model import SignatureDescription
from .repository import ModelRepository, VersionStatus
from .statistics import StatisticsBook


@dataclass(frozen=True)
class InferenceResult:
    model_name: str
    version: int
    class_names: tuple[str, ...]
    outputs: dict[str, np.ndarray]  # every signature output, leading axis = the request's images


@dataclass(frozen=True)
class ModelDescription:
    """What metadata endpoints (GetModelInfo, TF Serving GetModelMetadata, KServe ModelMetadata) need."""

    name: str
    version: int  # the version that answers when none is asked for
    loaded_versions: tuple[int, ...]
    signature: SignatureDescription
    class_names: tuple[str, ...]
    metadata: dict
    metadata_json: str
    device: str  # "cpu" or "gpu"
    max_batch_size: int
    runtime: str  # what computes this version: "litert+tensorflow", "tensorflow" or "litert"


class InferenceCore:
    def __init__(
        self,
        repository: ModelRepository,
        *,
        default_model: str,
        max_images_per_request: int,
        max_batch_size: int,
        clock: Callable[[], float] = time.monotonic,
        on_model_named: Callable[[str | None], None] = lambda name: None,
    ):
        self.repository = repository
        self.default_model = default_model
        self.max_images_per_request = max_images_per_request
        self.max_batch_size = max_batch_size
        self.clock = clock  # deadlines are absolute times on this clock
        # Told which served model a request named (None: none served) - the metrics label calls by it;
        # handed in by the wiring, so the core knows nothing of metrics.
        self._on_model_named = on_model_named
        self.statistics = StatisticsBook()  # per-version counts (KServe ModelStatistics); batchers feed it
        self._draining = False
        self._drain_callbacks: set[Callable[[], None]] = set()

    @property
    def model_names(self) -> list[str]:
        return self.repository.model_names

    @property
    def ready(self) -> bool:
        """Every model has a version loaded and the server is not shutting down."""
        return not self._draining and self.repository.ready

    @property
    def draining(self) -> bool:
        return self._draining

    def start_draining(self) -> None:
        """From now on /readyz fails and open streams end after answering what they accepted."""
        self._draining = True
        for callback in list(self._drain_callbacks):
            callback()

    def on_drain(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Calls `callback` (on the event loop) when draining starts; returns the unsubscribe function."""
        self._drain_callbacks.add(callback)
        return lambda: self._drain_callbacks.discard(callback)

    def deadline_from_timeout(self, timeout_s: float | None) -> float | None:
        """A gRPC context's time_remaining() -> an absolute deadline on our clock."""
        return None if timeout_s is None else self.clock() + timeout_s

    def model_name(self, name: str | None) -> str:
        """The configured model a request means ("" / None: the default). Labels the RPC's metrics."""
        name = name or self.default_model
        if name not in self.repository.model_names:
            self._on_model_named(None)
            raise ModelNotFound(name, available=self.model_names)
        self._on_model_named(name)
        return name

    def check_image_count(self, count: int) -> None:
        """Cheap early check, so adapters can refuse before decoding anything."""
        if count == 0:
            raise InvalidInput("the request has no images")
        if count > self.max_images_per_request:
            raise InvalidInput(
                f"the request has {count} images, the limit is "
                f"{self.max_images_per_request} per request (--max-images-per-request)"
            )

    async def infer(
        self, model_name: str | None, version: int | None, images: np.ndarray, deadline: float | None = None
    ) -> InferenceResult:
        """Classifies uint8 [N, 28, 28]. version None: the latest. deadline: absolute, on `clock`."""
        name = self.model_name(model_name)
        if version is not None and version < 1:
            raise InvalidInput(f"model version must be a positive integer, got {version}")
        served = self.repository.resolve(name, version)
        self._check_images(images, served.model.input_shape)
        if deadline is not None and deadline <= self.clock():
            raise DeadlineExceeded("before the request reached the model queue")
        outputs = await served.batcher.submit(images, deadline)
        model = served.model
        return InferenceResult(name, model.version, model.class_names, outputs)

    def _check_images(self, images: np.ndarray, input_shape: tuple[int, ...]) -> None:
        if not isinstance(images, np.ndarray):
            raise InvalidInput(f"images must be an array, got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise InvalidInput(f"images must have dtype uint8, got {images.dtype}")
        expected = list(input_shape[1:])
        if images.ndim != len(input_shape) or list(images.shape[1:]) != expected:
            raise InvalidInput(f"images must have shape [N, {', '.join(map(str, expected))}], got {list(images.shape)}")
        self.check_image_count(len(images))

    def signature(self, model_name: str | None, version: int | None = None) -> tuple[str, SignatureDescription]:
        """The model's name and its served signature: the one lookup an inference request needs
        before decoding (describe() builds the whole description, for metadata requests)."""
        name = self.model_name(model_name)
        if version is not None and version < 1:
            raise InvalidInput(f"model version must be a positive integer, got {version}")
        return name, self.repository.resolve(name, version).model.signature

    def loaded_versions(self, model_name: str) -> list[int]:
        return self.repository.loaded_versions(self.model_name(model_name))

    def signature_def(self, model_name: str, version: int | None = None) -> tuple[int, bytes]:
        """(the version that answers, its export's serialized SignatureDef): TF Serving's metadata."""
        model = self.repository.resolve(self.model_name(model_name), version).model
        return model.version, model.signature_def

    def image_preparation(self, model_name: str, version: int | None = None) -> str:
        """How PNG/JPEG inputs are prepared for this version (model.LoadedModel.image_preparation)."""
        return self.repository.resolve(model_name, version).model.image_preparation

    def describe(self, model_name: str | None, version: int | None = None) -> ModelDescription:
        name = self.model_name(model_name)
        if version is not None and version < 1:
            raise InvalidInput(f"model version must be a positive integer, got {version}")
        model = self.repository.resolve(name, version).model
        return ModelDescription(
            name=name,
            version=model.version,
            loaded_versions=tuple(self.repository.loaded_versions(name)),
            signature=model.signature,
            class_names=model.class_names,
            metadata=model.metadata,
            metadata_json=model.metadata_json,
            device=model.device.kind,
            max_batch_size=self.max_batch_size,
            runtime=model.runtime_name,
        )

    def version_statuses(self, model_name: str | None) -> list[VersionStatus]:
        return self.repository.statuses(self.model_name(model_name))
