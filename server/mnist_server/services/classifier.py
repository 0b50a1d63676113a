"""Our API, mnist_serving.v1.Classifier: proto -> uint8 array -> InferenceCore -> proto.

Errors are raised as domain exceptions; the metered handler (metered.py) turns them into status codes
with errors.to_status (streams put the same code and message into the per-message `error`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import numpy as np

from mnist_serving.images import ImageDecodeError, decode_image, decoded_pixels
from mnist_serving.v1 import classifier_pb2, classifier_pb2_grpc

from ..config import Settings
from ..errors import InvalidInput, to_status
from ..inference import InferenceCore, InferenceResult
from ..metered import MeteredServer
from .streams import ordered_stream

SERVICE_NAME = classifier_pb2.DESCRIPTOR.services_by_name["Classifier"].full_name
SIDE = 28
PIXELS = SIDE * SIDE
STREAM_WINDOW = 64  # requests of one stream computed concurrently (they may share batches)


class ClassifierService(classifier_pb2_grpc.ClassifierServicer):
    def __init__(self, core: InferenceCore, settings: Settings):
        self._core = core
        self._max_encoded_bytes = settings.max_encoded_bytes
        self._max_decoded_pixels = settings.max_decoded_pixels
        self._max_decoded_pixels_per_request = settings.max_decoded_pixels_per_request

    async def Classify(
        self, request: classifier_pb2.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.ClassifyResponse:
        return await self.classify(request, self._core.deadline_from_timeout(context.time_remaining()))

    async def ClassifyStream(
        self, request_iterator: AsyncIterator[classifier_pb2.ClassifyRequest], context: grpc.aio.ServicerContext
    ):
        deadline = self._core.deadline_from_timeout(context.time_remaining())
        async for response in ordered_stream(
            self._core, request_iterator, lambda request: self._answer(request, deadline), STREAM_WINDOW
        ):
            yield response

    async def _answer(
        self, request: classifier_pb2.ClassifyRequest, deadline: float | None
    ) -> classifier_pb2.ClassifyResponse:
        try:
            return await self.classify(request, deadline)
        except Exception as exc:  # a bad request does not end the stream
            code, message = to_status(exc)
            return classifier_pb2.ClassifyResponse(
                request_id=request.request_id, error=classifier_pb2.Error(code=code.value[0], message=message)
            )

    async def GetModelInfo(
        self, request: classifier_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.GetModelInfoResponse:
        info = self._core.describe(request.model.name or None, request.model.version or None)
        return classifier_pb2.GetModelInfoResponse(
            name=info.name,
            version=info.version,
            loaded_versions=info.loaded_versions,
            input_shape=info.signature.input.shape,
            input_dtype=info.signature.input.dtype,
            class_names=info.class_names,
            metadata_json=info.metadata_json,
            device=info.device,
            max_batch_size=info.max_batch_size,
            runtime=info.runtime,
        )

    async def classify(
        self, request: classifier_pb2.ClassifyRequest, deadline: float | None
    ) -> classifier_pb2.ClassifyResponse:
        """One Classify, whichever port it came in on (the HTTP upload route calls it too)."""
        model_name = self._core.model_name(request.model.name or None)  # NOT_FOUND before decoding
        if request.model.version < 0:
            raise InvalidInput(f"model.version must be 0 (latest) or positive, got {request.model.version}")
        images = await self._images(request, model_name, request.model.version or None)
        result = await self._core.infer(model_name, request.model.version or None, images, deadline)
        return _response(result, request.request_id)

    async def _images(self, request: classifier_pb2.ClassifyRequest, model: str, version: int | None) -> np.ndarray:
        has_packed = request.HasField("packed")
        if has_packed and len(request.images):
            raise InvalidInput("give either `images` or `packed`, not both")
        if has_packed:
            return self._unpack(request.packed)
        self._core.check_image_count(len(request.images))
        kinds = [image.WhichOneof("data") for image in request.images]
        if "encoded" not in kinds:
            return self._join_pixels(request.images, kinds)
        preparation = self._core.image_preparation(model, version)  # each model its own (NOT_FOUND first)
        return await asyncio.to_thread(self._decode_mixed, request.images, kinds, preparation)  # Pillow is slow-ish

    def _unpack(self, packed: classifier_pb2.PackedImages) -> np.ndarray:
        if packed.height != SIDE or packed.width != SIDE:
            raise InvalidInput(
                f"packed images must be {SIDE}x{SIDE} (height x width), got {packed.height}x{packed.width}"
            )
        self._core.check_image_count(packed.count)
        data = packed.data
        expected = packed.count * PIXELS
        if len(data) != expected:
            raise InvalidInput(
                f"packed.data has {len(data)} bytes, expected count*height*width = "
                f"{packed.count}*{SIDE}*{SIDE} = {expected} (uint8, row-major)"
            )
        return np.frombuffer(data, np.uint8).reshape(packed.count, SIDE, SIDE)

    def _check_decoding_budget(self, images, kinds: list) -> None:
        """Many images each under the per-image limit can still cost seconds of decoding together:
        their sizes, read from the headers, are summed before any image is decoded."""
        total = 0
        for index, (kind, image) in enumerate(zip(kinds, images)):
            if kind != "encoded":
                continue
            try:
                pixels = decoded_pixels(image.encoded, max_bytes=self._max_encoded_bytes)
            except ImageDecodeError as exc:
                raise InvalidInput(str(exc), index=index) from None
            if pixels > self._max_decoded_pixels:
                continue  # refused, with the per-image message, before it is decoded
            total += pixels
            if total > self._max_decoded_pixels_per_request:
                raise InvalidInput(
                    f"the encoded images up to image {index} decode to {total} pixels, more than "
                    f"the limit of {self._max_decoded_pixels_per_request} per request "
                    "(--max-decoded-pixels-per-request); send fewer or smaller images per request"
                )

    @staticmethod
    def _check_pixels(index: int, kind: str | None, image: classifier_pb2.Image) -> bytes:
        if kind is None:
            raise InvalidInput("has no data: set `pixels` (784 raw bytes) or `encoded` (PNG/JPEG)", index=index)
        if len(image.pixels) != PIXELS:
            raise InvalidInput(
                f"pixels has {len(image.pixels)} bytes, expected {SIDE}*{SIDE} = {PIXELS} (uint8 grayscale, row-major)",
                index=index,
            )
        return image.pixels

    def _join_pixels(self, images, kinds: list) -> np.ndarray:
        data = b"".join(self._check_pixels(i, kind, image) for i, (kind, image) in enumerate(zip(kinds, images)))
        return np.frombuffer(data, np.uint8).reshape(len(images), SIDE, SIDE)

    def _decode_mixed(self, images, kinds: list, preparation: str) -> np.ndarray:
        self._check_decoding_budget(images, kinds)
        out = np.empty((len(images), SIDE, SIDE), np.uint8)
        for index, (kind, image) in enumerate(zip(kinds, images)):
            if kind == "encoded":
                try:
                    out[index] = decode_image(
                        image.encoded,
                        max_bytes=self._max_encoded_bytes,
                        max_pixels=self._max_decoded_pixels,
                        preparation=preparation,
                    )
                except ImageDecodeError as exc:
                    raise InvalidInput(str(exc), index=index) from None
            else:
                out[index] = np.frombuffer(self._check_pixels(index, kind, image), np.uint8).reshape(SIDE, SIDE)
        return out


def _response(result: InferenceResult, request_id: str) -> classifier_pb2.ClassifyResponse:
    response = classifier_pb2.ClassifyResponse(
        model_name=result.model_name, model_version=result.version, request_id=request_id
    )
    names = result.class_names
    predictions = response.predictions
    for label, row in zip(result.outputs["classes"].tolist(), result.outputs["probabilities"].tolist()):
        predictions.add(
            label=label, class_name=names[label] if 0 <= label < len(names) else str(label), probabilities=row
        )
    return response


def add_to_server(server: MeteredServer, core: InferenceCore, settings: Settings) -> tuple[str, ...]:
    """Registers the service; returns its full name(s) for health and reflection."""
    classifier_pb2_grpc.add_ClassifierServicer_to_server(ClassifierService(core, settings), server)
    return (SERVICE_NAME,)
