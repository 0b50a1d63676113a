"""Our API over HTTP: what Classify and GetModelInfo answer on gRPC, as JSON.

POST /api/v1/classify[?model=NAME&version=N]
    Content-Type image/png or image/jpeg (any image/*): the body is one image file
    Content-Type multipart/form-data: every file field is an image (form fields `model`,
        `version` may stand in for the query)
    Content-Type application/json: a ClassifyRequest in the proto3 JSON mapping, e.g.
        {"images": [{"pixels": "<784 bytes, base64>"}]} or {"images": [{"encoded": "<PNG, base64>"}]}
    -> {"model_name", "model_version", "request_id", "predictions": [{"label", "class_name",
        "probabilities"}]}, as ClassifyResponse
GET /api/v1/models -> {"models": [<model info>, ...]}, the default model first
GET /api/v1/models/{model}[?version=N] -> GetModelInfoResponse's fields (metadata parsed)
"""

from __future__ import annotations

import asyncio

from aiohttp import BodyPartReader, web
from google.protobuf import json_format

from mnist_serving.v1 import classifier_pb2

from ..errors import InvalidInput, ServingError
from ..inference import ModelDescription
from ..services.classifier import SERVICE_NAME
from .bodies import body_timeout_s, check_declared_length, read_body, read_json
from .context import WebContext, protected

FORM_FIELDS = ("model", "version", "request_id")


def add_routes(router: web.UrlDispatcher, context: WebContext) -> None:
    api = ClassifyApi(context)
    router.add_post("/api/v1/classify", api.classify)
    router.add_get("/api/v1/models", api.models)
    router.add_get("/api/v1/models/{model}", api.model)


def _version(text: str | None, where: str) -> int:
    if text in (None, ""):
        return 0
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"{where} must be a positive integer (or absent for the latest), got '{text[:40]}'")
    return int(text)


def describe_json(info: ModelDescription) -> dict:
    return {
        "name": info.name,
        "version": info.version,
        "loaded_versions": list(info.loaded_versions),
        "input_shape": list(info.signature.input.shape),
        "input_dtype": info.signature.input.dtype,
        "class_names": list(info.class_names),
        "metadata": info.metadata,
        "device": info.device,
        "max_batch_size": info.max_batch_size,
        "runtime": info.runtime,
    }


def response_json(response: classifier_pb2.ClassifyResponse) -> dict:
    return {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "request_id": response.request_id,
        "predictions": [
            {"label": p.label, "class_name": p.class_name, "probabilities": list(p.probabilities)}
            for p in response.predictions
        ],
    }


class ClassifyApi:
    def __init__(self, context: WebContext):
        self._core = context.core
        self._classifier = context.classifier
        self._settings = context.settings

    @protected(SERVICE_NAME)
    async def classify(self, request: web.Request) -> web.Response:
        content_type = request.content_type
        if content_type.startswith("image/"):
            message = self._request_from_query(request)
            message.images.add(encoded=await read_body(request))
        elif content_type.startswith("multipart/"):
            message = await self._request_from_form(request)
        else:  # JSON, whatever else the type says (curl -d sends a form type); read_json refuses raw bytes
            message = self._request_from_json(
                await read_json(
                    request,
                    what="an image file (Content-Type image/png or image/jpeg), a multipart form with image "
                    "files, or a ClassifyRequest as JSON",
                )
            )
            if not message.model.name:
                message.model.MergeFrom(self._request_from_query(request).model)
        deadline = self._core.deadline_from_timeout(None)
        response = await self._classifier.classify(message, deadline)
        return web.json_response(response_json(response))

    def _request_from_query(self, request: web.Request) -> classifier_pb2.ClassifyRequest:
        query = request.query
        unknown = sorted(set(query) - set(FORM_FIELDS))
        if unknown:
            raise InvalidInput(f"unknown query parameter(s) {', '.join(unknown)}; known: {', '.join(FORM_FIELDS)}")
        message = classifier_pb2.ClassifyRequest(request_id=query.get("request_id", ""))
        message.model.name = self._core.model_name(query.get("model") or None)
        message.model.version = _version(query.get("version"), "the query's version")
        return message

    async def _request_from_form(self, request: web.Request) -> classifier_pb2.ClassifyRequest:
        if request.content_length is None:
            raise web.HTTPLengthRequired(text="a multipart upload needs a Content-Length header")
        check_declared_length(request)
        message = self._request_from_query(request)
        try:
            await asyncio.wait_for(self._read_form(request, message), body_timeout_s(request))
        except TimeoutError:
            raise web.HTTPRequestTimeout(
                text=f"the request body did not arrive within {body_timeout_s(request):g} s (--http-body-timeout)"
            ) from None
        if not message.images:
            raise InvalidInput("the form holds no image file; add one, e.g. curl -F image=@digit.png")
        return message

    async def _read_form(self, request: web.Request, message: classifier_pb2.ClassifyRequest) -> None:
        try:
            reader = await request.multipart()
        except (ValueError, AssertionError, KeyError) as exc:
            raise InvalidInput(f"the multipart form cannot be read: {exc}") from None
        while True:
            try:
                part = await reader.next()
            except ValueError as exc:
                raise InvalidInput(f"the multipart form is malformed: {exc}") from None
            if part is None:
                return
            if not isinstance(part, BodyPartReader):
                raise InvalidInput("the multipart form nests another multipart body; send image files as fields")
            data = await part.read()  # bounded: the body's Content-Length is within the limit
            if part.filename is None and part.name is not None and part.name in FORM_FIELDS:
                value = data.decode("utf-8", "replace").strip()
                if part.name == "model":
                    message.model.name = self._core.model_name(value or None)
                elif part.name == "version":
                    message.model.version = _version(value, "the form's version")
                else:
                    message.request_id = value
            elif part.filename is not None or (part.headers.get("Content-Type", "")).startswith("image/"):
                self._core.check_image_count(len(message.images) + 1)
                message.images.add(encoded=bytes(data))
            else:
                raise InvalidInput(
                    f"the form field '{part.name}' is neither an image file nor one of {', '.join(FORM_FIELDS)}"
                )

    def _request_from_json(self, value: dict) -> classifier_pb2.ClassifyRequest:
        message = classifier_pb2.ClassifyRequest()
        try:
            json_format.ParseDict(value, message)
        except json_format.ParseError as exc:
            raise InvalidInput(
                f"the body is not a ClassifyRequest: {exc} (bytes fields are base64; arrays of "
                "pixel numbers go to /v1/models/{model}:predict or /v2/models/{model}/infer)"
            ) from None
        return message

    @protected(SERVICE_NAME)
    async def models(self, request: web.Request) -> web.Response:
        names = sorted(self._core.model_names, key=lambda name: (name != self._core.default_model, name))
        models = []
        for name in names:
            try:
                models.append(describe_json(self._core.describe(name)))
            except ServingError as exc:  # e.g. no version loaded yet: listed, with the reason
                models.append({"name": name, "error": exc.message})
        return web.json_response({"models": models, "default_model": self._core.default_model})

    @protected(SERVICE_NAME)
    async def model(self, request: web.Request) -> web.Response:
        version = _version(request.query.get("version"), "the query's version") or None
        return web.json_response(describe_json(self._core.describe(request.match_info["model"], version)))
