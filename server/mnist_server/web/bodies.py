"""Reading request bodies within the limits, and JSON numbers -> numpy, for every API on the port.

Limits: a Content-Length above --max-receive-message-bytes is refused with 413 before a byte of the
body is read (aiohttp stops a chunked body at the same limit); a body that does not arrive within
--http-body-timeout gets 408. Large JSON bodies are parsed on a worker thread, not the event loop.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
from aiohttp import web

from ..errors import InvalidInput
from .context import SETTINGS

JSON_ON_THREAD_BYTES = 256 * 1024  # bigger bodies are parsed off the event loop
MAX_RANK = 8
NOT_JSON_TYPES = ("image/", "multipart/", "application/octet-stream")


def body_timeout_s(request: web.Request) -> float:
    return request.app[SETTINGS].http_body_timeout_s


def check_declared_length(request: web.Request) -> None:
    """413 from the headers alone: not a byte of an oversize body is read."""
    limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)


async def read_body(request: web.Request) -> bytes:
    check_declared_length(request)
    timeout = body_timeout_s(request)
    try:
        return await asyncio.wait_for(request.read(), timeout)
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the request body did not arrive within {timeout:g} s (--http-body-timeout)"
        ) from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes):
    """bytes -> the JSON value; NaN and Infinity, which Python's json would accept, are refused
    as the JSON grammar (RFC 8259) refuses them."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the body is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None


async def read_json(request: web.Request, *, what: str = "a JSON object") -> dict:
    """The body as a JSON object. Content types that say the body is something else (an image, a
    form, raw bytes) get 415; anything else (application/json, curl's default form type, none)
    is parsed, as TF Serving's REST API does."""
    content_type = request.content_type
    if content_type.startswith(NOT_JSON_TYPES):
        raise web.HTTPUnsupportedMediaType(
            text=f"{request.method} {request.path} takes {what} "
            f"(Content-Type: application/json), got Content-Type {content_type}"
        )
    body = await read_body(request)
    if not body.strip():
        raise InvalidInput(f"the body is empty; send {what}")
    value = await asyncio.to_thread(parse_json, body) if len(body) > JSON_ON_THREAD_BYTES else parse_json(body)
    if not isinstance(value, dict):
        raise InvalidInput(f"the body must be {what}, got a JSON {json_type(value)}")
    return value


def json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def json_shape(name: str, value) -> list[int]:
    """The shape of nested JSON arrays, checked rectangular, without building anything."""
    shape = []
    level = value
    while isinstance(level, list):
        shape.append(len(level))
        if not level:
            break
        level = level[0]
        if len(shape) > MAX_RANK:
            raise InvalidInput(f"'{name}' is nested more than {MAX_RANK} arrays deep; images are [N, 28, 28]")
    _check_rectangular(name, value, shape, 0)
    return shape


def _check_rectangular(name: str, value, shape: list[int], depth: int) -> None:
    if depth == len(shape):
        if isinstance(value, list):
            raise InvalidInput(f"'{name}' is nested deeper in some places than in others (ragged arrays)")
        return
    if not isinstance(value, list) or len(value) != shape[depth]:
        raise InvalidInput(
            f"'{name}' is ragged: every array at depth {depth} must have {shape[depth]} elements, as the first one does"
        )
    for item in value:
        _check_rectangular(name, item, shape, depth + 1)


def pixels_from_json(name: str, value) -> np.ndarray:
    """Nested JSON arrays of pixels -> numpy: uint8 when every value is a JSON integer (pixels 0-255),
    float64 when any has a fraction or exponent (pixels / 255 in [0, 1], checked by tensors.to_images).
    Booleans, strings, nulls, objects and integers outside 0-255 are refused with their place named."""
    shape = json_shape(name, value)
    flat = list(_leaves(value, len(shape)))
    kinds = {type(v) for v in flat}
    if kinds - {int, float}:
        bad = next(v for v in flat if type(v) not in (int, float))
        raise InvalidInput(f"'{name}' must hold numbers (pixels), found a JSON {json_type(bad)}: {_short(bad)}")
    if float in kinds:
        array = np.asarray(flat, np.float64)
        if not np.isfinite(array).all():  # 1e999 parses to inf
            raise InvalidInput(f"'{name}' holds a number too large for a pixel (only [0, 1] floats or 0-255 integers)")
        return array.reshape(shape)
    low, high = (min(flat), max(flat)) if flat else (0, 0)
    if low < 0 or high > 255:
        raise InvalidInput(
            f"'{name}': integer pixels must be in [0, 255], found values in [{low}, {_short(high)}]; "
            "send floats in [0, 1] or integers 0-255"
        )
    return np.asarray(flat, np.uint8).reshape(shape)


def _leaves(value, depth: int):
    if depth == 0:
        yield value
        return
    for item in value:
        yield from _leaves(item, depth - 1)


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
