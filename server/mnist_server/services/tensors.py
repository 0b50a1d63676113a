"""Tensors of the TF Serving and KServe v2 protocols <-> numpy, and numpy -> the model's images.

What the compatibility adapters accept for the image input (README "Compatibility"):
- dtype uint8 (pixels 0-255, 0 = background) or float32/float64 in [0, 1] (pixel / 255, as the
  Keras tutorials feed MNIST); floats are scaled by 255 and rounded. NaN, infinity and values
  outside [0, 1] are rejected rather than guessed at: send uint8 for 0-255 pixels.
- shape [N, 28, 28], [N, 784] (flattened rows) or [N, 28, 28, 1] (channels-last), N >= 1.
Every problem raises InvalidInput (-> INVALID_ARGUMENT) with a message naming the input and what
was wrong.
"""

from __future__ import annotations

import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2

from ..errors import InvalidInput

SIDE = 28
PIXELS = SIDE * SIDE
ACCEPTED_SHAPES = "[N, 28, 28], [N, 784] or [N, 28, 28, 1]"


def check_image_shape(name: str, shape: list[int], unknown_rank: bool = False) -> None:
    """Before any value is decoded: a rank and trailing dimensions to_images accepts. Without it a
    few bytes claiming shape [1, 28, 2**40] make the decoder allocate terabytes (TensorFlow's
    repeat-the-last-value rule), and [1, 2**32, 2**32] overflows an int64 element count."""
    if unknown_rank:
        raise InvalidInput(f"input '{name}' has unknown rank; give its shape, one of {ACCEPTED_SHAPES}")
    if not (
        (len(shape) == 2 and shape[1] == PIXELS)
        or (len(shape) == 3 and shape[1:] == [SIDE, SIDE])
        or (len(shape) == 4 and shape[1:] == [SIDE, SIDE, 1])
    ):
        raise InvalidInput(f"input '{name}' has shape {shape}; expected {ACCEPTED_SHAPES}")


def to_images(name: str, array: np.ndarray) -> np.ndarray:
    """A decoded uint8/float tensor -> uint8 [N, 28, 28], validated."""
    shape = list(array.shape)
    if array.ndim == 2 and shape[1] == PIXELS:
        array = array.reshape(-1, SIDE, SIDE)
    elif array.ndim == 4 and shape[1:] == [SIDE, SIDE, 1]:
        array = array.reshape(-1, SIDE, SIDE)
    elif not (array.ndim == 3 and shape[1:] == [SIDE, SIDE]):
        raise InvalidInput(f"input '{name}' has shape {shape}; expected {ACCEPTED_SHAPES}")
    if array.shape[0] == 0:
        raise InvalidInput(f"input '{name}' holds no images (its batch dimension is 0)")
    if array.dtype == np.uint8:
        return array
    if array.dtype not in (np.float32, np.float64):
        raise InvalidInput(f"input '{name}' has dtype {array.dtype}; expected uint8 or float32")
    if not np.isfinite(array).all():
        raise InvalidInput(f"input '{name}' contains NaN or infinity")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise InvalidInput(
            f"input '{name}': float pixels must be in [0, 1] (pixel / 255), found values "
            f"in [{low:g}, {high:g}]; send uint8 for 0-255 pixels"
        )
    return np.rint(array * 255.0).astype(np.uint8)


# --- TensorFlow Serving: tensorflow.TensorProto ---------------------------------------------

# dtype -> (numpy dtype, the typed repeated field carrying its values)
_TF_INPUT_TYPES: dict[int, tuple[np.dtype, str]] = {
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
}
_TF_OUTPUT_TYPES = {
    np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
    np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
    np.dtype(np.uint8): (types_pb2.DT_UINT8, "int_val"),
}


def tf_dtype_name(dtype: int) -> str:
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DataType {dtype}"


def ndarray_from_tensor_proto(name: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
    """TensorProto (tensor_content or the typed *_val field) -> numpy, with TensorFlow's own rules:
    a typed field shorter than the shape repeats its last value (how tf.make_tensor_proto encodes
    constants), DT_UINT8 int_val keeps the low 8 bits. Only dtypes this model can take are accepted."""
    if proto.dtype not in _TF_INPUT_TYPES:
        raise InvalidInput(
            f"input '{name}' has dtype {tf_dtype_name(proto.dtype)}; expected DT_UINT8 (0-255) or DT_FLOAT (0-1)"
        )
    dtype, field = _TF_INPUT_TYPES[proto.dtype]
    if proto.tensor_shape.unknown_rank:
        raise InvalidInput(f"input '{name}' has unknown rank; give its shape")
    shape = [d.size for d in proto.tensor_shape.dim]
    if any(size < 0 for size in shape):
        raise InvalidInput(f"input '{name}' has shape {shape} with a negative dimension")
    count = math.prod(shape)  # exact: no int64 overflow
    if proto.tensor_content:
        expected = count * dtype.itemsize
        if len(proto.tensor_content) != expected:
            raise InvalidInput(
                f"input '{name}': tensor_content has {len(proto.tensor_content)} bytes; "
                f"shape {shape} of {tf_dtype_name(proto.dtype)} needs {expected}"
            )
        return np.frombuffer(proto.tensor_content, dtype.newbyteorder("<")).reshape(shape)
    values = getattr(proto, field)
    if len(values) == 0:
        raise InvalidInput(
            f"input '{name}' carries no values: set tensor_content or {field} for {tf_dtype_name(proto.dtype)}"
        )
    if len(values) > count:
        raise InvalidInput(f"input '{name}' has {len(values)} values in {field}; shape {shape} holds {count}")
    if dtype == np.uint8:
        # int_val is int32; TensorFlow (so TF Serving) keeps the low 8 bits of each value. Clients
        # rely on it: perf_analyzer copies one byte into an uninitialised int32 per pixel.
        flat = (np.asarray(values, np.int64) & 0xFF).astype(np.uint8)
    else:
        flat = np.asarray(values, dtype)
    if len(flat) < count:
        flat = np.concatenate([flat, np.full(count - len(flat), flat[-1], dtype)])
    return flat.reshape(shape)


def fill_tensor_proto(proto: tensor_pb2.TensorProto, array: np.ndarray) -> tensor_pb2.TensorProto:
    """numpy -> the typed *_val field of `proto` (filled in place: a response's map entry needs no
    copy), as TF Serving answers by default (clients reading `outputs[...].float_val` directly keep
    working; tf.make_ndarray reads both forms)."""
    dtype, field = _TF_OUTPUT_TYPES[array.dtype]
    proto.dtype = dtype
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add(size=size)
    getattr(proto, field).extend(array.ravel().tolist())
    return proto


def tensor_proto_from_ndarray(array: np.ndarray) -> tensor_pb2.TensorProto:
    return fill_tensor_proto(tensor_pb2.TensorProto(), array)


# --- KServe v2 / Triton: datatype strings, typed contents, raw bytes ------------------------

_KSERVE_INPUT_TYPES: dict[str, tuple[np.dtype, str]] = {  # datatype -> (numpy dtype, the InferTensorContents field)
    "UINT8": (np.dtype(np.uint8), "uint_contents"),
    "FP32": (np.dtype(np.float32), "fp32_contents"),
    "FP64": (np.dtype(np.float64), "fp64_contents"),
}
KSERVE_DATATYPES = {
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.int64): "INT64",
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
}


def ndarray_from_kserve(name: str, datatype: str, shape: list[int], contents, raw: bytes | None) -> np.ndarray:
    """One KServe v2 input -> numpy. `raw` is its raw_input_contents entry (None when the
    request uses typed `contents`); `contents` is an InferTensorContents."""
    if datatype not in _KSERVE_INPUT_TYPES:
        raise InvalidInput(f"input '{name}' has datatype {datatype or '(empty)'}; expected UINT8 (0-255) or FP32 (0-1)")
    dtype, field = _KSERVE_INPUT_TYPES[datatype]
    if any(size < 0 for size in shape):
        raise InvalidInput(f"input '{name}' has shape {shape} with a negative dimension")
    count = math.prod(shape)  # exact: no int64 overflow
    if raw is not None:
        expected = count * dtype.itemsize
        if len(raw) != expected:
            raise InvalidInput(
                f"input '{name}': raw_input_contents has {len(raw)} bytes; shape {shape} of {datatype} needs {expected}"
            )
        return np.frombuffer(raw, dtype.newbyteorder("<")).reshape(shape)
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInput(f"input '{name}' has {len(values)} values in contents.{field}; shape {shape} holds {count}")
    if dtype == np.uint8:
        wide = np.asarray(values, np.int64)
        if count and wide.max() > 255:
            raise InvalidInput(f"input '{name}': UINT8 values must be in [0, 255], found {wide.max()}")
        return wide.astype(np.uint8).reshape(shape)
    return np.asarray(values, dtype).reshape(shape)


def kserve_raw_bytes(array: np.ndarray) -> bytes:
    """numpy -> raw_output_contents bytes (little-endian, row-major)."""
    return np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
