"""TensorFlow Serving's gRPC API (package tensorflow.serving) on our core: a thin adapter.

PredictionService: Predict, Classify (tf.Example images -> every class with its score),
GetModelMetadata (the served SavedModel's real `serving_default` SignatureDef); Regress and
MultiInference answer UNIMPLEMENTED. ModelService: GetModelStatus (every version seen, TF
Serving's states); HandleReloadConfigRequest answers UNIMPLEMENTED (versions hot-reload from disk).
Version labels (`--version-labels stable=3,canary=4`) resolve `model_spec.version_label`.
Generated code comes from the `tensorflow-serving-api` package; tensors go through tensors.py.
"""

from __future__ import annotations

import grpc
import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from ..config import Settings
from ..errors import InvalidInput, ModelNotFound
from ..inference import InferenceCore
from ..metered import MeteredServer
from ..model import SIGNATURE_KEY
from .tensors import PIXELS, check_image_shape, fill_tensor_proto, ndarray_from_tensor_proto, to_images

PREDICTION_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name
MODEL_SERVICE = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name
SIGNATURE_DEF_FIELD = "signature_def"
_STATES = get_model_status_pb2.ModelVersionStatus.State
_ERROR_CODE_OK, _ERROR_CODE_UNKNOWN = 0, 2  # tensorflow.error.Code


class VersionResolver:
    """model_spec -> (model name, version or None for latest), shared by both gRPC services and
    the REST routes (web/tfserving.py), so a label means the same version on every port."""

    def __init__(self, core: InferenceCore, settings: Settings):
        self._core = core
        self._labels: dict[str, dict[str, int]] = {}
        for entry in settings.version_labels:
            self._labels.setdefault(entry.model, {})[entry.label] = entry.version

    def resolve(self, spec: model_pb2.ModelSpec) -> tuple[str, int | None]:
        name = self._core.model_name(spec.name or None)
        choice = spec.WhichOneof("version_choice")
        if choice == "version":
            if spec.version.value < 1:
                raise InvalidInput(f"model_spec.version must be a positive integer, got {spec.version.value}")
            return name, spec.version.value
        if choice == "version_label":
            labels = self._labels.get(name, {})
            if spec.version_label not in labels:
                known = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none (see --version-labels)"
                raise InvalidInput(f"unknown version_label '{spec.version_label}' for model '{name}'; labels: {known}")
            return name, labels[spec.version_label]
        return name, None

    def check_signature(self, name: str, signature_name: str) -> str:
        if signature_name not in ("", SIGNATURE_KEY):
            raise InvalidInput(f"signature '{signature_name}' not found in model '{name}'; it serves '{SIGNATURE_KEY}'")
        return SIGNATURE_KEY


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: InferenceCore, resolver: VersionResolver):
        self._core = core
        self._resolver = resolver

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        name, version = self._resolver.resolve(request.model_spec)
        signature = self._resolver.check_signature(name, request.model_spec.signature_name)
        _, described = self._core.signature(name, version)
        input_name = described.input.name
        unknown = sorted(set(request.inputs) - {input_name})
        if unknown or input_name not in request.inputs:
            raise InvalidInput(
                f"signature '{signature}' of model '{name}' takes exactly one input, "
                f"'{input_name}'; the request has {sorted(request.inputs) or 'none'}"
            )
        outputs = [t.name for t in described.outputs]
        for wanted in request.output_filter:
            if wanted not in outputs:
                raise InvalidInput(
                    f"output_filter names '{wanted}', not an output of signature "
                    f"'{signature}'; outputs: {', '.join(outputs)}"
                )
        tensor = request.inputs[input_name]
        check_image_shape(input_name, [d.size for d in tensor.tensor_shape.dim], tensor.tensor_shape.unknown_rank)
        self._core.check_image_count(tensor.tensor_shape.dim[0].size if tensor.tensor_shape.dim else 0)
        images = to_images(input_name, ndarray_from_tensor_proto(input_name, tensor))
        result = await self._core.infer(
            name, version, images, self._core.deadline_from_timeout(context.time_remaining())
        )
        response = predict_pb2.PredictResponse(model_spec=_spec(name, result.version, signature))
        for output in request.output_filter or outputs:
            fill_tensor_proto(response.outputs[output], result.outputs[output])
        return response

    async def Classify(
        self, request: classification_pb2.ClassificationRequest, context: grpc.aio.ServicerContext
    ) -> classification_pb2.ClassificationResponse:
        """Each tf.Example holds one image under the signature's input name: bytes_list (784 raw
        uint8 bytes), int64_list (784 pixels 0-255) or float_list (784 values in [0, 1]). The answer
        lists every class, in class order, with its probability as the score."""
        name, version = self._resolver.resolve(request.model_spec)
        signature = self._resolver.check_signature(name, request.model_spec.signature_name)
        input_name = self._core.signature(name, version)[1].input.name
        kind = request.input.WhichOneof("kind")
        if kind is None:
            raise InvalidInput("input has no examples: set input.example_list")
        examples = list(getattr(request.input, kind).examples)
        if kind == "example_list_with_context":  # TF's rule: each example's own features win
            context_example = request.input.example_list_with_context.context
            examples = [_merged(context_example, example) for example in examples]
        self._core.check_image_count(len(examples))
        images = np.concatenate([_example_image(input_name, i, e) for i, e in enumerate(examples)])
        result = await self._core.infer(
            name, version, images, self._core.deadline_from_timeout(context.time_remaining())
        )
        response = classification_pb2.ClassificationResponse(model_spec=_spec(name, result.version, signature))
        for row in result.outputs["probabilities"].tolist():
            response.result.classifications.add().classes.extend(
                classification_pb2.Class(label=label, score=score) for label, score in zip(result.class_names, row)
            )
        return response

    async def Regress(self, request, context: grpc.aio.ServicerContext):
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "Regress: this server serves classifiers; use Predict or Classify"
        )

    async def MultiInference(self, request, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not supported; use Predict or Classify")

    async def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        name, version = self._resolver.resolve(request.model_spec)
        fields = list(request.metadata_field)
        if fields != [SIGNATURE_DEF_FIELD]:
            raise InvalidInput(
                f"metadata_field must be ['{SIGNATURE_DEF_FIELD}'] (the only metadata served), got {fields}"
            )
        answering, signature_def = self._core.signature_def(name, version)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        # exactly as the export wrote it (tensor names included), kept from load time: the
        # version's files may be gone from disk by now while it still serves
        signatures.signature_def[SIGNATURE_KEY].ParseFromString(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=_spec(name, answering))
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: InferenceCore, resolver: VersionResolver):
        self._core = core
        self._resolver = resolver

    async def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.aio.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        name, version = self._resolver.resolve(request.model_spec)
        statuses = self._core.version_statuses(name)
        if version is not None:
            statuses = [s for s in statuses if s.version == version]
            if not statuses:
                raise ModelNotFound(name, version, available=[s.version for s in self._core.version_statuses(name)])
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in statuses:
            response.model_version_status.add(
                version=status.version,
                state=_STATES.Value(status.state.value),
                status=status_pb2.StatusProto(
                    error_code=_ERROR_CODE_UNKNOWN if status.error else _ERROR_CODE_OK, error_message=status.error or ""
                ),
            )
        return response

    async def HandleReloadConfigRequest(self, request, context: grpc.aio.ServicerContext):
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "models come from --model-dir/--model and new versions load from disk by "
            "themselves; there is no config to reload",
        )


def _spec(name: str, version: int, signature: str = "") -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(name=name, version=wrappers_pb2.Int64Value(value=version), signature_name=signature)


def _merged(context_example, example):
    merged = type(example)()
    merged.CopyFrom(context_example)
    merged.MergeFrom(example)
    return merged


def _example_image(input_name: str, index: int, example) -> np.ndarray:
    feature = example.features.feature.get(input_name)
    kind = feature.WhichOneof("kind") if feature is not None else None
    where = f"example {index}, feature '{input_name}'"
    if kind is None:
        raise InvalidInput(f"{where} is missing: give 784 pixels as bytes_list, int64_list or float_list")
    values = getattr(feature, kind).value
    if kind == "bytes_list":
        if len(values) != 1 or len(values[0]) != PIXELS:
            raise InvalidInput(f"{where}: bytes_list must hold one value of {PIXELS} bytes (uint8 pixels)")
        return np.frombuffer(values[0], np.uint8).reshape(1, 28, 28)
    if len(values) != PIXELS:
        raise InvalidInput(f"{where}: {kind} has {len(values)} values, expected {PIXELS}")
    if kind == "int64_list":
        pixels = np.asarray(values, np.int64)
        if pixels.min() < 0 or pixels.max() > 255:
            raise InvalidInput(f"{where}: int64_list pixels must be in [0, 255]")
        return pixels.astype(np.uint8).reshape(1, 28, 28)
    return to_images(input_name, np.asarray(values, np.float32).reshape(1, PIXELS))


def add_to_server(server: MeteredServer, core: InferenceCore, settings: Settings) -> tuple[str, ...]:
    resolver = VersionResolver(core, settings)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(core, resolver), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core, resolver), server)
    return (PREDICTION_SERVICE, MODEL_SERVICE)
