"""KServe v2 / Open Inference Protocol REST, as Triton serves it, on the HTTP port (docs/http-kserve.md).

    GET  /v2                                    server metadata
    GET  /v2/health/live, /v2/health/ready      200, or 400 when not ready (open, like gRPC health)
    GET  /v2/models/{model}[/versions/{v}]      model metadata
    GET  .../ready                              200 when ready, else 400 (unknown models are not ready)
    GET  .../config                             Triton's model configuration, as JSON
    GET  /v2/models[/{model}[/versions/{v}]]/stats   Triton's statistics extension
    POST .../infer                              JSON tensors and/or binary tensor data (kserve_body.py)
    repository, shared memory, trace, logging   501, as the gRPC adapter's UNIMPLEMENTED

Every answer comes from the gRPC adapter (services/kserve.py): the same protobuf, written as JSON the
way Triton's HTTP server writes it (64-bit integers as JSON numbers, which perf_analyzer requires),
so the two ports cannot disagree and inference joins the same batches.
"""

from __future__ import annotations

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from tritonclient.grpc import service_pb2

from ..services.kserve import SERVICE_NAME, InferenceService
from .context import WebContext, protected
from .kserve_body import infer_response, read_infer_call
from .middleware import error_response

BINARY_EXTENSION = "binary_tensor_data"  # HTTP only: Triton lists it in the HTTP server metadata
MODEL_PATHS = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
NOT_SUPPORTED_PATHS = (
    "/v2/repository/index",
    "/v2/repository/models/{model}/load",
    "/v2/repository/models/{model}/unload",
    "/v2/systemsharedmemory/status",
    "/v2/systemsharedmemory/region/{region}/status",
    "/v2/systemsharedmemory/register",
    "/v2/systemsharedmemory/region/{region}/register",
    "/v2/systemsharedmemory/unregister",
    "/v2/systemsharedmemory/region/{region}/unregister",
    "/v2/cudasharedmemory/status",
    "/v2/cudasharedmemory/region/{region}/status",
    "/v2/cudasharedmemory/register",
    "/v2/cudasharedmemory/region/{region}/register",
    "/v2/cudasharedmemory/unregister",
    "/v2/cudasharedmemory/region/{region}/unregister",
    "/v2/trace/setting",
    "/v2/models/{model}/trace/setting",
    "/v2/logging",
)
NOT_SUPPORTED = (
    "not supported by this server (models and versions come from --model-dir; no shared memory, trace or log settings)"
)
WIDE_INTEGERS = (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64)


def add_routes(router: web.UrlDispatcher, context: WebContext) -> None:
    api = KServeRest(context)
    router.add_get("/v2", api.server_metadata)
    router.add_get("/v2/health/live", api.live)
    router.add_get("/v2/health/ready", api.ready)
    router.add_get("/v2/models/stats", api.statistics)  # before /v2/models/{model}: "stats" is no model
    for path in MODEL_PATHS:
        router.add_get(path, api.model_metadata)
        router.add_get(path + "/ready", api.model_ready)
        router.add_get(path + "/config", api.model_config)
        router.add_get(path + "/stats", api.statistics)
        router.add_post(path + "/infer", api.infer)
    for path in NOT_SUPPORTED_PATHS:
        router.add_route("*", path, api.not_supported)


def message_json(message: Message) -> dict:
    """A protobuf as Triton's HTTP JSON: field names as in the .proto, fields at their defaults
    included, and 64-bit integers as numbers (the proto3 JSON mapping writes them as strings)."""
    value = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _wide_as_numbers(value, message.DESCRIPTOR)


def _wide_as_numbers(value: dict, descriptor: Descriptor) -> dict:
    for field in descriptor.fields:
        if field.name not in value:
            continue
        item = value[field.name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name["value"]
            value[field.name] = {key: _field_value(v, entry) for key, v in item.items()}
        elif isinstance(item, list):
            value[field.name] = [_field_value(v, field) for v in item]
        else:
            value[field.name] = _field_value(item, field)
    return value


def _field_value(item, field: FieldDescriptor):
    if field.message_type is not None and isinstance(item, dict):
        return _wide_as_numbers(item, field.message_type)
    if field.cpp_type in WIDE_INTEGERS and isinstance(item, str):
        return int(item)
    return item


class KServeRest:
    def __init__(self, context: WebContext):
        self._core = context.core
        self._service = InferenceService(context.core, context.settings)

    @staticmethod
    def _model(request: web.Request) -> tuple[str, str]:
        return request.match_info.get("model", ""), request.match_info.get("version", "")

    # --- health: open, as gRPC health is; Triton answers 200 or 400 with an empty body -------

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def ready(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self._core.ready else 400)

    @protected(SERVICE_NAME)
    async def model_ready(self, request: web.Request) -> web.Response:
        name, version = self._model(request)
        answer = await self._service.ModelReady(service_pb2.ModelReadyRequest(name=name, version=version), None)
        return web.Response(status=200 if answer.ready else 400)

    # --- metadata, configuration, statistics ----------------------------------------------------

    @protected(SERVICE_NAME)
    async def server_metadata(self, request: web.Request) -> web.Response:
        answer = message_json(await self._service.ServerMetadata(service_pb2.ServerMetadataRequest(), None))
        answer["extensions"] = [*answer["extensions"], BINARY_EXTENSION]
        return web.json_response(answer)

    @protected(SERVICE_NAME)
    async def model_metadata(self, request: web.Request) -> web.Response:
        name, version = self._model(request)
        answer = await self._service.ModelMetadata(service_pb2.ModelMetadataRequest(name=name, version=version), None)
        return web.json_response(message_json(answer))

    @protected(SERVICE_NAME)
    async def model_config(self, request: web.Request) -> web.Response:
        """The config itself, not wrapped in {"config": ...}: Triton's HTTP form."""
        name, version = self._model(request)
        answer = await self._service.ModelConfig(service_pb2.ModelConfigRequest(name=name, version=version), None)
        return web.json_response(message_json(answer.config))

    @protected(SERVICE_NAME)
    async def statistics(self, request: web.Request) -> web.Response:
        name, version = self._model(request)
        answer = message_json(
            await self._service.ModelStatistics(service_pb2.ModelStatisticsRequest(name=name, version=version), None)
        )
        # perf_analyzer reads every duration (cache_hit, cache_miss too) as a number: none may be missing
        durations = [f.name for f in service_pb2.InferStatistics.DESCRIPTOR.fields]
        for model in answer["model_stats"]:
            stats = model.setdefault("inference_stats", {})
            for duration in durations:
                stats.setdefault(duration, {"count": 0, "ns": 0})
        return web.json_response(answer)

    # --- inference --------------------------------------------------------------------------------

    @protected(SERVICE_NAME)
    async def infer(self, request: web.Request) -> web.Response:
        name, version = self._model(request)
        call = await read_infer_call(request, name, version)
        answer = await self._service.infer(call.request, self._core.deadline_from_timeout(call.timeout_s))
        return infer_response(call, answer)

    @protected(SERVICE_NAME)
    async def not_supported(self, request: web.Request) -> web.Response:
        return error_response(501, f"{request.method} {request.path} is {NOT_SUPPORTED}")
