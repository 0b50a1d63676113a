"""KServe v2 REST inference bodies <-> the gRPC adapter's ModelInferRequest / ModelInferResponse.

Request: a JSON object ({"id", "parameters", "inputs", "outputs"}), optionally followed by binary
tensor data (Triton's binary tensor data extension, what tritonclient.http and perf_analyzer send by
default): the header Inference-Header-Content-Length gives the JSON part's length, and each input
with the parameter `binary_data_size` takes that many bytes of the rest, in input order.
JSON `data` may be flat or nested (row-major); it is checked against `shape` and `datatype` here,
then carried as raw bytes, so the gRPC adapter validates both ports' tensors with one set of rules.
Response: each output as JSON `data`, or as binary after the JSON when asked (`binary_data` on a
requested output, `binary_data_output` in the request's parameters), with the same header.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
from aiohttp import web
from tritonclient.grpc import service_pb2

from ..errors import InvalidInput
from ..services.kserve import CLASSIFICATION
from ..services.tensors import check_image_shape
from .bodies import JSON_ON_THREAD_BYTES, json_shape, json_type, parse_json, read_body

HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT_DTYPES: dict[str, np.dtype] = {"UINT8": np.dtype("<u1"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
OUTPUT_DTYPES: dict[str, np.dtype] = {
    "UINT8": np.dtype("<u1"),
    "INT64": np.dtype("<i8"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
REQUEST_KEYS = ("id", "parameters", "inputs", "outputs")
INPUT_KEYS = ("name", "shape", "datatype", "parameters", "data")
OUTPUT_KEYS = ("name", "parameters")
INT64_MAX = 2**63 - 1
NOTHING = object()
InputTensor = service_pb2.ModelInferRequest.InferInputTensor
WHAT = (
    "an inference request: a JSON object with 'inputs', optionally followed by binary tensor data "
    f"(header {HEADER_LENGTH})"
)


@dataclass
class InferCall:
    request: service_pb2.ModelInferRequest
    binary_default: bool = False  # the request's binary_data_output
    binary_outputs: dict[str, bool] = field(default_factory=dict)  # per requested output
    timeout_s: float | None = None  # the request's `timeout` parameter (microseconds, as Triton)


async def read_infer_call(request: web.Request, model: str, version: str) -> InferCall:
    head, binary = await _read(request)
    if len(head) > JSON_ON_THREAD_BYTES:  # parsing and checking big JSON tensors takes a while: off the loop
        return await asyncio.to_thread(_parse, head, binary, model, version)
    return _parse(head, binary, model, version)


async def _read(request: web.Request) -> tuple[bytes, memoryview]:
    """(the JSON part, the binary part). Any Content-Type but images and forms: tritonclient.http
    sends even all-JSON requests as application/octet-stream."""
    if request.content_type.startswith(("image/", "multipart/")):
        raise web.HTTPUnsupportedMediaType(
            text=f"{request.method} {request.path} takes {WHAT}, got Content-Type "
            f"{request.content_type}; images go to /api/v1/classify"
        )
    declared = request.headers.get(HEADER_LENGTH)
    length = None
    if declared is not None:
        text = declared.strip()
        if not (text.isascii() and text.isdigit()):
            raise InvalidInput(
                f"the {HEADER_LENGTH} header must be the JSON part's length in bytes (a non-negative "
                f"integer), got '{declared[:40]}'"
            )
        length = int(text)
    body = await read_body(request)
    if length is None:
        length = len(body)
    elif length > len(body):
        raise InvalidInput(
            f"the {HEADER_LENGTH} header says the JSON part has {length} bytes, but the whole body has only {len(body)}"
        )
    return body[:length], memoryview(body)[length:]


def _parse(head: bytes, binary: memoryview, model: str, version: str) -> InferCall:
    if not head.strip():
        raise InvalidInput(f"the JSON part of the body is empty; send {WHAT}")
    value = parse_json(head)
    if not isinstance(value, dict):
        raise InvalidInput(f"the body must be {WHAT}; its JSON part is a JSON {json_type(value)}")
    return parse_infer_call(value, binary, model, version)


def _object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object, got a JSON {json_type(value)}")
    return value


def _check_keys(value: dict, known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(map(repr, unknown))} in {where}; known: {', '.join(known)}")


def _integer(value, where: str, low: int = 0) -> int:
    if type(value) is not int or not low <= value <= INT64_MAX:
        raise InvalidInput(f"{where} must be an integer >= {low}, got {json.dumps(value)[:40]}")
    return value


def parse_infer_call(value: dict, binary: memoryview, model: str, version: str) -> InferCall:
    _check_keys(value, REQUEST_KEYS, "the inference request")
    request_id = value.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidInput(f"'id' must be a string, got a JSON {json_type(request_id)}")
    call = InferCall(service_pb2.ModelInferRequest(model_name=model, model_version=version, id=request_id))
    parameters = _object(value.get("parameters", {}), "'parameters'")
    call.binary_default = parameters.get("binary_data_output", False)
    if not isinstance(call.binary_default, bool):
        raise InvalidInput("the parameter 'binary_data_output' must be true or false")
    if "timeout" in parameters:
        call.timeout_s = _integer(parameters["timeout"], "the parameter 'timeout' (microseconds)", 1) / 1e6
    inputs = value.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput(
            'the request needs \'inputs\': a non-empty array of tensors, e.g. [{"name": "images", '
            '"datatype": "UINT8", "shape": [1, 28, 28], "data": [...]}]'
        )
    offset = 0
    for index, item in enumerate(inputs):
        tensor, raw, from_binary = _input(_object(item, f"inputs[{index}]"), index, binary, offset)
        offset += len(raw) if from_binary else 0
        call.request.inputs.append(tensor)
        call.request.raw_input_contents.append(raw)
    if offset != len(binary):
        raise InvalidInput(
            f"{len(binary)} bytes of binary tensor data follow the JSON part, but the inputs' "
            f"binary_data_size parameters account for {offset}"
        )
    for index, item in enumerate(_list(value.get("outputs", []), "'outputs'")):
        _output(call, _object(item, f"outputs[{index}]"), index)
    return call


def _list(value, where: str) -> list:
    if not isinstance(value, list):
        raise InvalidInput(f"{where} must be a JSON array, got a JSON {json_type(value)}")
    return value


def _input(item: dict, index: int, binary: memoryview, offset: int) -> tuple[Any, bytes, bool]:
    """(the tensor, its raw little-endian bytes, whether they came from the binary part)"""
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"inputs[{index}] needs a 'name' (a non-empty string)")
    _check_keys(item, INPUT_KEYS, f"input '{name}'")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(f"input '{name}' needs a 'datatype': UINT8 (0-255), FP32 or FP64 (0-1)")
    shape = item.get("shape")
    if not isinstance(shape, list) or any(type(d) is not int or abs(d) > INT64_MAX for d in shape):
        raise InvalidInput(f"input '{name}' needs a 'shape': an array of integers, e.g. [1, 28, 28]")
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input '{name}' has shape {shape} with a negative dimension")
    check_image_shape(name, shape)
    if datatype not in INPUT_DTYPES:
        raise InvalidInput(
            f"input '{name}' has datatype {datatype or '(empty)'}; expected UINT8 (0-255), FP32 or FP64 (0-1)"
        )
    dtype, count = INPUT_DTYPES[datatype], math.prod(shape)
    parameters = _object(item.get("parameters", {}), f"input '{name}' parameters")
    if any(key.startswith("shared_memory") for key in parameters):
        raise InvalidInput(f"input '{name}': shared memory is not supported; send the data in the request")
    tensor = InputTensor(name=name, datatype=datatype, shape=shape)
    if "binary_data_size" not in parameters:
        if "data" not in item:
            raise InvalidInput(f"input '{name}' has neither 'data' nor a 'binary_data_size' parameter")
        return tensor, _json_tensor(name, datatype, dtype, item["data"], shape, count).tobytes(), False
    if "data" in item:
        raise InvalidInput(f"input '{name}' has both 'data' and a 'binary_data_size' parameter; give one")
    size = _integer(parameters["binary_data_size"], f"input '{name}': binary_data_size")
    if size != count * dtype.itemsize:
        raise InvalidInput(
            f"input '{name}': binary_data_size is {size} bytes; shape {shape} of {datatype} needs "
            f"{count * dtype.itemsize}"
        )
    if offset + size > len(binary):
        raise InvalidInput(
            f"input '{name}': binary_data_size is {size} bytes, but only {len(binary) - offset} "
            "bytes of binary data are left after the JSON part"
        )
    return tensor, bytes(binary[offset : offset + size]), True


def _json_tensor(name: str, datatype: str, dtype: np.dtype, data, shape: list[int], count: int) -> np.ndarray:
    """JSON numbers -> a little-endian array of the declared datatype, every value checked."""
    if not isinstance(data, list):
        raise InvalidInput(f"input '{name}': 'data' must be an array of numbers, got a JSON {json_type(data)}")
    flat = data
    for _ in range(len(json_shape(f"{name}.data", data)) - 1):  # rectangular, checked; then row-major
        flat = list(chain.from_iterable(flat))
    if len(flat) != count:
        raise InvalidInput(f"input '{name}' has {len(flat)} values in 'data'; shape {shape} holds {count}")
    allowed = (int,) if datatype == "UINT8" else (int, float)
    bad = next((v for v in flat if type(v) not in allowed), NOTHING)  # bool is not int here
    if bad is not NOTHING:
        hint = "; send FP32 for floats in [0, 1]" if isinstance(bad, float) else ""
        kind = "integers" if datatype == "UINT8" else "numbers"
        raise InvalidInput(
            f"input '{name}': {datatype} data must hold {kind}, "
            f"found a JSON {json_type(bad)}: {json.dumps(bad)[:40]}{hint}"
        )
    if datatype == "UINT8":
        low, high = (min(flat), max(flat)) if flat else (0, 0)
        if low < 0 or high > 255:
            raise InvalidInput(
                f"input '{name}': UINT8 values must be in [0, 255], found values in [{str(low)[:20]}, {str(high)[:20]}]"
            )
        return np.asarray(flat, dtype)
    try:
        wide = np.asarray(flat, np.float64)
    except OverflowError:  # an integer beyond any float
        wide = np.array([np.inf])
    with np.errstate(over="ignore"):
        array = wide.astype(dtype)
    if not np.isfinite(array).all():  # 1e999 parses as inf; 1e300 overflows FP32
        raise InvalidInput(f"input '{name}' holds a number too large for {datatype} (pixels are floats in [0, 1])")
    return array


def _output(call: InferCall, item: dict, index: int) -> None:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"outputs[{index}] needs a 'name' (a non-empty string)")
    _check_keys(item, OUTPUT_KEYS, f"output '{name}'")
    parameters = _object(item.get("parameters", {}), f"output '{name}' parameters")
    output = call.request.outputs.add(name=name)
    for key, value in parameters.items():
        if key == "binary_data":
            if not isinstance(value, bool):
                raise InvalidInput(f"output '{name}': the parameter 'binary_data' must be true or false")
            call.binary_outputs[name] = value
        elif key == CLASSIFICATION:
            output.parameters[CLASSIFICATION].int64_param = _integer(value, f"output '{name}': classification")
        elif key.startswith("shared_memory"):
            raise InvalidInput(f"output '{name}': shared memory is not supported")


def infer_response(call: InferCall, response: service_pb2.ModelInferResponse) -> web.Response:
    body: dict = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        body["id"] = response.id
    outputs, chunks = [], []
    for tensor, raw in zip(response.outputs, response.raw_output_contents):
        entry: dict = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if call.binary_outputs.get(tensor.name, call.binary_default):
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_values(tensor.datatype, raw)
        outputs.append(entry)
    body["outputs"] = outputs
    text = json.dumps(body).encode()
    if not chunks:
        return web.Response(body=text, content_type="application/json")
    return web.Response(
        body=b"".join([text, *chunks]), content_type="application/octet-stream", headers={HEADER_LENGTH: str(len(text))}
    )


def _json_values(datatype: str, raw: bytes) -> list:
    if datatype != "BYTES":
        return np.frombuffer(raw, OUTPUT_DTYPES[datatype]).tolist()
    values, at = [], 0  # BYTES: each element a 4-byte little-endian length, then its bytes
    while at < len(raw):
        size = int.from_bytes(raw[at : at + 4], "little")
        values.append(raw[at + 4 : at + 4 + size].decode())
        at += 4 + size
    return values
