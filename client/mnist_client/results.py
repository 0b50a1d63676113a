"""What calls return: ``Prediction`` and ``ModelInfo``, built from the response messages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grpc

from mnist_client.errors import ClientError, code_from_number
from mnist_serving.v1 import classifier_pb2 as pb


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's answer for one image.

    >>> p = Prediction(label=7, class_name="7", probabilities=(0.0,) * 7 + (1.0, 0.0, 0.0),
    ...                model_version=3)
    >>> p.label, p.probability
    (7, 1.0)
    """

    label: int
    class_name: str
    probabilities: tuple[float, ...]
    model_version: int

    @property
    def probability(self) -> float:
        """The probability of the predicted label."""
        return self.probabilities[self.label]


@dataclass(frozen=True)
class ModelInfo:
    """What the server serves (``GetModelInfo``); ``metadata`` is the export's metadata.json."""

    name: str
    version: int
    loaded_versions: tuple[int, ...]
    input_shape: tuple[int, ...]
    input_dtype: str
    class_names: tuple[str, ...]
    device: str
    max_batch_size: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_message(cls, msg: pb.GetModelInfoResponse) -> ModelInfo:
        metadata = json.loads(msg.metadata_json) if msg.metadata_json else {}
        return cls(
            name=msg.name,
            version=msg.version,
            loaded_versions=tuple(msg.loaded_versions),
            input_shape=tuple(msg.input_shape),
            input_dtype=msg.input_dtype,
            class_names=tuple(msg.class_names),
            device=msg.device,
            max_batch_size=msg.max_batch_size,
            metadata=metadata,
        )


def predictions_from(response: pb.ClassifyResponse, expected: int) -> list[Prediction]:
    """One ``Prediction`` per image of the request; raises ``ClientError`` for a stream error."""
    if response.HasField("error") and response.error.code:
        raise ClientError(code_from_number(response.error.code), response.error.message)
    if len(response.predictions) != expected:
        raise ClientError(
            grpc.StatusCode.INTERNAL, f"server answered {len(response.predictions)} predictions for {expected} images"
        )
    version = response.model_version
    return [Prediction(p.label, p.class_name, tuple(p.probabilities), version) for p in response.predictions]
