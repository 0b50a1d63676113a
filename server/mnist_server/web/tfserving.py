"""TensorFlow Serving's REST API (its docs' "RESTful API") on the HTTP port, the rules of the gRPC
adapter (services/tfserving.py) behind it:

    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]           GetModelStatusResponse as JSON
    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata  {"model_spec", "metadata": {"signature_def"}}
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict   row ("instances") or columnar ("inputs")
    POST ...:classify  {"examples": [{"images": [784 pixels]}, ...], "context"} -> {"results": [...]}
    POST ...:regress   501: this server serves classifiers

Status, metadata and classify go through the gRPC servicers themselves (as TF Serving's REST handler
goes through its gRPC implementations), so both ports answer the same; predict decodes JSON pixels
straight to numpy and calls core.infer. Choices beyond the spec (docs/http-tfserving.md):
- a {"b64": "..."} value is one image: 784 raw uint8 bytes, row-major (TF Serving takes b64 only
  for DT_STRING inputs; our input is uint8, and 784 bytes of base64 beat 784 JSON numbers);
- "output_filter" (as PredictRequest.output_filter) picks outputs; one output gives the spec's
  plain list of values;
- unknown top-level fields are refused rather than ignored; NaN/Infinity are refused (bodies.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re

import numpy as np
from aiohttp import web
from google.protobuf import json_format
from tensorflow.core.example import feature_pb2
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, get_model_status_pb2, model_pb2

from ..errors import InvalidInput
from ..services.tensors import PIXELS, check_image_shape, to_images
from ..services.tfserving import (
    MODEL_SERVICE,
    PREDICTION_SERVICE,
    SIGNATURE_DEF_FIELD,
    ModelService,
    PredictionService,
    VersionResolver,
)
from .bodies import json_type, pixels_from_json, read_json
from .context import WebContext, protected

MODEL_PATHS = (
    "/v1/models/{model:[^/:]+}",
    "/v1/models/{model:[^/:]+}/versions/{version:[^/:]+}",
    "/v1/models/{model:[^/:]+}/labels/{label:[^/:]+}",
)
VERSION_TEXT = re.compile(r"[0-9]{1,18}")  # int64 without overflow
PREDICT_FIELDS = ("signature_name", "instances", "inputs", "output_filter")
CLASSIFY_FIELDS = ("signature_name", "context", "examples")
OFF_LOOP_IMAGES = 32  # more JSON images than this are decoded on a worker thread, not the event loop


def add_routes(router: web.UrlDispatcher, context: WebContext) -> None:
    api = TfServingRestApi(context)
    for path in MODEL_PATHS:  # one route per verb: the metrics name each
        router.add_get(path, api.status)
        router.add_get(path + "/metadata", api.metadata)
        router.add_post(path + ":predict", api.predict)
        router.add_post(path + ":classify", api.classify)
        router.add_post(path + ":regress", api.regress)


class _NoDeadline:
    """The gRPC context the shared Classify asks for its deadline: TF Serving's REST API has none."""

    @staticmethod
    def time_remaining() -> None:
        return None


def _model_spec(request: web.Request) -> model_pb2.ModelSpec:
    info = request.match_info
    spec = model_pb2.ModelSpec(name=info["model"])
    if "version" in info:
        text = info["version"]
        if not VERSION_TEXT.fullmatch(text) or int(text) < 1:
            raise InvalidInput(f"the version in the URL must be a positive integer, got '{text[:40]}'")
        spec.version.value = int(text)
    elif "label" in info:
        spec.version_label = info["label"]
    return spec


def _check_fields(body: dict, known: tuple[str, ...], verb: str) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(repr(k[:40]) for k in unknown[:5])} in the {verb} "
            f"request; it takes {', '.join(known)}"
        )


def _signature_name(body: dict) -> str:
    value = body.get("signature_name", "")
    if not isinstance(value, str):
        raise InvalidInput(f"'signature_name' must be a string, got a JSON {json_type(value)}")
    return value


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _b64_bytes(where: str, value) -> bytes:
    if not _is_b64(value):
        raise InvalidInput(
            f'{where} is a JSON {json_type(value)} among {{"b64": ...}} images; send every image the same way'
        )
    text = value["b64"]
    if not isinstance(text, str):
        raise InvalidInput(f"{where}: 'b64' must be a base64 string, got a JSON {json_type(text)}")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: 'b64' is not valid base64") from None


def _b64_image(where: str, value) -> np.ndarray:
    data = _b64_bytes(where, value)
    if len(data) != PIXELS:
        raise InvalidInput(
            f"{where}: 'b64' decodes to {len(data)} bytes; an image is {PIXELS} bytes (28x28 uint8 pixels, row-major)"
        )
    return np.frombuffer(data, np.uint8).reshape(28, 28)


def _images(where: str, input_name: str, value) -> np.ndarray:
    """JSON images (nested pixel arrays, or a list of b64 images) -> uint8 [N, 28, 28], validated."""
    if _is_b64(value):
        raise InvalidInput(
            f"'{where}' is one {{\"b64\": ...}} value; a b64 value is one image, so "
            'send an array of them: [{"b64": ...}, ...]'
        )
    if isinstance(value, list) and value and _is_b64(value[0]):
        return np.stack([_b64_image(f"{where}[{i}]", item) for i, item in enumerate(value)])
    pixels = pixels_from_json(where, value)
    check_image_shape(input_name, list(pixels.shape))
    return to_images(input_name, pixels)


def _row_values(instances, input_name: str) -> list:
    """The row format's instances -> one JSON image each (the named form {"images": ...} unwrapped)."""
    if not isinstance(instances, list):
        raise InvalidInput(
            f"'instances' must be an array with one image per element (row format), got a JSON {json_type(instances)}"
        )
    if not (instances and isinstance(instances[0], dict) and not _is_b64(instances[0])):
        return instances
    values = []
    for index, item in enumerate(instances):
        if not isinstance(item, dict) or _is_b64(item) or set(item) != {input_name}:
            got = f"keys {sorted(item)[:5]}" if isinstance(item, dict) else f"a JSON {json_type(item)}"
            raise InvalidInput(
                f"instance {index} must be an object with the one key '{input_name}' "
                f"(the signature's only input), as instance 0 is; got {got}"
            )
        values.append(item[input_name])
    return values


def _columnar_value(inputs, input_name: str):
    if isinstance(inputs, dict) and not _is_b64(inputs):
        names = sorted(inputs)
        if names != [input_name]:
            raise InvalidInput(
                f"'inputs' names {[n[:40] for n in names[:5]]}; the signature takes one input, '{input_name}'"
            )
        return inputs[input_name]
    return inputs


def _outputs(body: dict, available: list[str], signature: str) -> list[str]:
    wanted = body.get("output_filter", [])
    if not isinstance(wanted, list) or not all(isinstance(name, str) for name in wanted):
        raise InvalidInput("'output_filter' must be an array of output names")
    for name in wanted:
        if name not in available:
            raise InvalidInput(
                f"output_filter names '{name[:40]}', not an output of signature '{signature}'; "
                f"outputs: {', '.join(available)}"
            )
    return list(dict.fromkeys(wanted)) or available


def _predict_answer(arrays: dict[str, np.ndarray], row: bool) -> dict:
    """The spec's shapes: one output -> its values alone; several -> one object per instance (row)
    or one object of whole tensors (columnar)."""
    lists = {name: array.tolist() for name, array in arrays.items()}
    if len(lists) == 1:
        return {"predictions" if row else "outputs": next(iter(lists.values()))}
    if not row:
        return {"outputs": lists}
    count = len(next(iter(lists.values())))
    return {"predictions": [{name: values[i] for name, values in lists.items()} for i in range(count)]}


def _feature(where: str, value) -> feature_pb2.Feature:
    """One JSON feature -> tf.train.Feature by TF Serving's REST rules: b64 -> bytes_list, integers ->
    int64_list, decimals -> float_list; here always the 784 pixels of one image."""
    if _is_b64(value):
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[_b64_bytes(where, value)]))
    if isinstance(value, list) and value and _is_b64(value[0]):
        return feature_pb2.Feature(
            bytes_list=feature_pb2.BytesList(value=[_b64_bytes(f"{where}[{i}]", item) for i, item in enumerate(value)])
        )
    pixels = pixels_from_json(where, value)
    if pixels.ndim != 1:
        raise InvalidInput(
            f"'{where}' must be a flat array of {PIXELS} pixels (a tf.Example feature is a "
            f"list), got shape {list(pixels.shape)}"
        )
    if pixels.dtype == np.uint8:
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=pixels.tolist()))
    return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=pixels.tolist()))


def _fill_example(example, features, input_name: str, where: str) -> None:
    """Only the image feature is read (as the gRPC Classify does); other features are ignored."""
    if not isinstance(features, dict):
        raise InvalidInput(f"'{where}' must be a JSON object of features, got a JSON {json_type(features)}")
    if input_name in features:
        example.features.feature[input_name].CopyFrom(_feature(f"{where}.{input_name}", features[input_name]))


def _classification_request(
    body: dict, spec: model_pb2.ModelSpec, input_name: str
) -> classification_pb2.ClassificationRequest:
    message = classification_pb2.ClassificationRequest(model_spec=spec)
    examples = body["examples"]
    if "context" in body:
        target = message.input.example_list_with_context
        _fill_example(target.context, body["context"], input_name, "context")
    else:
        target = message.input.example_list
    for index, features in enumerate(examples):
        _fill_example(target.examples.add(), features, input_name, f"examples[{index}]")
    return message


def _message_json(message, *, proto_names: bool = False) -> dict:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=proto_names, always_print_fields_with_no_presence=True
    )


class TfServingRestApi:
    def __init__(self, context: WebContext):
        self._core = context.core
        self._resolver = VersionResolver(context.core, context.settings)
        # their GetModelStatus/GetModelMetadata never touch the gRPC context; Classify asks only its deadline
        self._prediction = PredictionService(context.core, self._resolver)
        self._models = ModelService(context.core, self._resolver)

    async def _off_loop_if_large(self, count: int, function, *args):
        if count > OFF_LOOP_IMAGES:
            return await asyncio.to_thread(function, *args)
        return function(*args)

    @protected(MODEL_SERVICE)
    async def status(self, request: web.Request) -> web.Response:
        answer = await self._models.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec=_model_spec(request)), None
        )
        return web.json_response(_message_json(answer))  # the proto's json_names are TF Serving's

    @protected(PREDICTION_SERVICE)
    async def metadata(self, request: web.Request) -> web.Response:
        answer = await self._prediction.GetModelMetadata(
            get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=_model_spec(request), metadata_field=[SIGNATURE_DEF_FIELD]
            ),
            None,
        )
        signatures = get_model_metadata_pb2.SignatureDefMap()
        answer.metadata[SIGNATURE_DEF_FIELD].Unpack(signatures)
        return web.json_response(
            {
                "model_spec": _message_json(answer.model_spec, proto_names=True),
                "metadata": {SIGNATURE_DEF_FIELD: _message_json(signatures, proto_names=True)},
            }
        )

    @protected(PREDICTION_SERVICE)
    async def predict(self, request: web.Request) -> web.Response:
        body = await read_json(request, what='a predict request (a JSON object with "instances" or "inputs")')
        _check_fields(body, PREDICT_FIELDS, "predict")
        name, version = self._resolver.resolve(_model_spec(request))
        signature = self._resolver.check_signature(name, _signature_name(body))
        described = self._core.signature(name, version)[1]
        outputs = _outputs(body, [t.name for t in described.outputs], signature)
        row = "instances" in body
        if row == ("inputs" in body):
            raise InvalidInput(
                "a predict request has either 'instances' (row format) or 'inputs' (columnar "
                f"format), {'not both' if row else 'and this one has neither'}"
            )
        input_name = described.input.name
        value = _row_values(body["instances"], input_name) if row else _columnar_value(body["inputs"], input_name)
        count = len(value) if isinstance(value, list) else 1
        self._core.check_image_count(count)
        images = await self._off_loop_if_large(count, _images, "instances" if row else "inputs", input_name, value)
        result = await self._core.infer(name, version, images, self._core.deadline_from_timeout(None))
        return web.json_response(_predict_answer({output: result.outputs[output] for output in outputs}, row))

    @protected(PREDICTION_SERVICE)
    async def classify(self, request: web.Request) -> web.Response:
        body = await read_json(request, what='a classify request (a JSON object with "examples")')
        _check_fields(body, CLASSIFY_FIELDS, "classify")
        spec = _model_spec(request)
        spec.signature_name = _signature_name(body)
        name, version = self._resolver.resolve(spec)
        input_name = self._core.signature(name, version)[1].input.name
        examples = body.get("examples")
        if not isinstance(examples, list) or not examples:
            got = (
                "nothing"
                if examples is None
                else "an empty array"
                if examples == []
                else f"a JSON {json_type(examples)}"
            )
            raise InvalidInput(
                f"'examples' must be a non-empty array of tf.Example objects such as "
                f'{{"{input_name}": [784 pixels]}}, got {got}'
            )
        self._core.check_image_count(len(examples))
        message = await self._off_loop_if_large(len(examples), _classification_request, body, spec, input_name)
        answer = await self._prediction.Classify(message, _NoDeadline())
        return web.json_response(
            {
                "results": [
                    [[c.label, c.score] for c in classification.classes]
                    for classification in answer.result.classifications
                ]
            }
        )

    @protected(PREDICTION_SERVICE)
    async def regress(self, request: web.Request) -> web.Response:
        name, _ = self._resolver.resolve(_model_spec(request))  # unknown models and labels answer as elsewhere
        raise web.HTTPNotImplemented(
            text=f"regress: model '{name}' is a classifier and has no regression signature; use :predict or :classify"
        )
