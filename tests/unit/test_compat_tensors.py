"""TensorProto / KServe tensors <-> numpy, checked against TensorFlow's and tritonclient's own encoders."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.grpc import InferInput, service_pb2

from mnist_server.errors import InvalidInput
from mnist_server.services.tensors import (
    kserve_raw_bytes,
    ndarray_from_kserve,
    ndarray_from_tensor_proto,
    tensor_proto_from_ndarray,
    to_images,
)

RNG = np.random.default_rng(7)
PIXELS = RNG.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)


# --- to_images: shapes, dtypes, float scaling ---------------------------------------------


@pytest.mark.parametrize("shape", [(3, 28, 28), (3, 784), (3, 28, 28, 1)])
def test_accepted_shapes_give_the_same_images(shape):
    np.testing.assert_array_equal(to_images("images", PIXELS.reshape(shape)), PIXELS)


@pytest.mark.parametrize("shape", [(28, 28), (3, 28, 27), (3, 28, 28, 3), (3, 783), (784,)])
def test_other_shapes_are_rejected_naming_input_and_shape(shape):
    with pytest.raises(InvalidInput, match=r"input 'images' has shape \[.*\]; expected \[N, 28, 28\]"):
        to_images("images", np.zeros(shape, np.uint8))


def test_empty_batch_is_rejected():
    with pytest.raises(InvalidInput, match="holds no images"):
        to_images("images", np.zeros((0, 28, 28), np.uint8))


def test_floats_in_unit_range_are_scaled_to_pixels():
    as_float = PIXELS.astype(np.float32) / 255.0
    np.testing.assert_array_equal(to_images("images", as_float), PIXELS)
    np.testing.assert_array_equal(to_images("images", as_float.astype(np.float64)), PIXELS)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinity_are_rejected(bad):
    images = np.zeros((1, 28, 28), np.float32)
    images[0, 3, 4] = bad
    with pytest.raises(InvalidInput, match="input 'x' contains NaN or infinity"):
        to_images("x", images)


def test_floats_outside_unit_range_are_rejected_with_the_range_found():
    with pytest.raises(InvalidInput, match=r"must be in \[0, 1\].*found values in \[0, 255\]"):
        to_images("images", PIXELS.astype(np.float32))


def test_integer_dtypes_other_than_uint8_are_rejected():
    with pytest.raises(InvalidInput, match="dtype int32"):
        to_images("images", PIXELS.astype(np.int32))


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=3).map(lambda s: (s[0], 28, 28)),
        elements=st.floats(0, 1, width=32),
    )
)
def test_any_unit_float_maps_into_the_nearest_pixel(images):
    pixels = to_images("images", images)
    assert pixels.dtype == np.uint8 and pixels.shape == images.shape
    assert np.abs(pixels.astype(np.float64) - images.astype(np.float64) * 255).max() <= 0.5 + 1e-4


# --- TF Serving TensorProto ---------------------------------------------------------------


@pytest.mark.parametrize("array", [PIXELS, PIXELS.astype(np.float32) / 255, PIXELS.astype(np.float64) / 255])
def test_tensorflows_own_encoding_decodes_to_the_same_array(array):
    proto = tf.make_tensor_proto(array)  # tensor_content, as TF Serving clients send
    decoded = ndarray_from_tensor_proto("images", proto)
    np.testing.assert_array_equal(decoded, array)
    assert decoded.dtype == array.dtype


def test_typed_int_val_for_uint8_decodes():
    proto = tf.make_tensor_proto(PIXELS)
    proto.ClearField("tensor_content")
    proto.int_val.extend(PIXELS.ravel().tolist())
    np.testing.assert_array_equal(ndarray_from_tensor_proto("images", proto), PIXELS)


def test_typed_float_val_decodes():
    values = PIXELS.astype(np.float32) / 255
    proto = tf.make_tensor_proto(values)
    proto.ClearField("tensor_content")
    proto.float_val.extend(values.ravel().tolist())
    np.testing.assert_array_equal(ndarray_from_tensor_proto("images", proto), values)


def test_a_short_typed_field_repeats_its_last_value_like_tensorflow():
    proto = tf.make_tensor_proto(7, dtype=tf.uint8, shape=[2, 28, 28])  # int_val [7]
    assert list(proto.int_val) == [7] and not proto.tensor_content
    decoded = ndarray_from_tensor_proto("images", proto)
    np.testing.assert_array_equal(decoded, tf.make_ndarray(proto))


def test_uint8_int_val_keeps_the_low_byte_like_tensorflow():
    """perf_analyzer sends each uint8 pixel as an int32 whose upper three bytes are garbage;
    TensorFlow Serving keeps the low byte, so must we."""
    garbage = RNG.integers(-(2**31), 2**31 - 256, size=PIXELS.size, dtype=np.int64) & ~0xFF
    proto = tf.make_tensor_proto(PIXELS)
    proto.ClearField("tensor_content")
    proto.int_val.extend((garbage | PIXELS.ravel()).astype(np.int32).tolist())
    np.testing.assert_array_equal(ndarray_from_tensor_proto("images", proto), PIXELS)


@pytest.mark.parametrize(
    "values,name",
    [
        (np.zeros((1, 28, 28), np.int32), "DT_INT32"),
        (np.zeros((1, 28, 28), np.float16), "DT_HALF"),
        (np.full((1, 2), b"png"), "DT_STRING"),
    ],
)
def test_unsupported_tf_dtypes_are_rejected_by_name(values, name):
    with pytest.raises(InvalidInput, match=f"input 'images' has dtype {name}; expected DT_UINT8"):
        ndarray_from_tensor_proto("images", tf.make_tensor_proto(values))


def test_tensor_content_of_the_wrong_size_is_rejected():
    proto = tf.make_tensor_proto(PIXELS)
    proto.tensor_content = proto.tensor_content[:-1]
    with pytest.raises(
        InvalidInput, match="tensor_content has 2351 bytes; shape \\[3, 28, 28\\] of DT_UINT8 needs 2352"
    ):
        ndarray_from_tensor_proto("images", proto)


def test_missing_values_and_too_many_values_are_rejected():
    proto = tf.make_tensor_proto(PIXELS)
    proto.ClearField("tensor_content")
    with pytest.raises(InvalidInput, match="carries no values: set tensor_content or int_val"):
        ndarray_from_tensor_proto("images", proto)
    proto.int_val.extend([0] * (PIXELS.size + 1))
    with pytest.raises(InvalidInput, match="2353 values in int_val; shape \\[3, 28, 28\\] holds 2352"):
        ndarray_from_tensor_proto("images", proto)


def test_unknown_rank_is_rejected():
    proto = tf.make_tensor_proto(PIXELS)
    proto.tensor_shape.unknown_rank = True
    with pytest.raises(InvalidInput, match="unknown rank"):
        ndarray_from_tensor_proto("images", proto)


@pytest.mark.parametrize("array", [RNG.random((4, 10), dtype=np.float32), np.array([3, 1, 4, 1], np.int64)])
def test_outputs_use_typed_fields_and_tensorflow_reads_them_back(array):
    proto = tensor_proto_from_ndarray(array)
    assert not proto.tensor_content
    np.testing.assert_array_equal(tf.make_ndarray(proto), array)
    assert tf.make_ndarray(proto).dtype == array.dtype


# --- KServe v2 ----------------------------------------------------------------------------


def _tritonclient_input(
    array: np.ndarray, datatype: str
) -> tuple[service_pb2.ModelInferRequest.InferInputTensor, bytes]:
    """What tritonclient puts on the wire for InferInput.set_data_from_numpy."""
    infer_input = InferInput("images", list(array.shape), datatype)
    infer_input.set_data_from_numpy(array)
    return infer_input._get_tensor(), infer_input._get_content()


@pytest.mark.parametrize("array,datatype", [(PIXELS, "UINT8"), (PIXELS.astype(np.float32) / 255, "FP32")])
def test_tritonclient_raw_inputs_decode_to_the_same_array(array, datatype):
    tensor, raw = _tritonclient_input(array, datatype)
    assert raw  # tritonclient sends raw_input_contents
    decoded = ndarray_from_kserve("images", tensor.datatype, list(tensor.shape), tensor.contents, raw)
    np.testing.assert_array_equal(decoded, array)


def test_typed_contents_decode():
    contents = service_pb2.InferTensorContents(uint_contents=PIXELS.ravel().tolist())
    np.testing.assert_array_equal(ndarray_from_kserve("images", "UINT8", [3, 28, 28], contents, None), PIXELS)
    values = PIXELS.astype(np.float32) / 255
    contents = service_pb2.InferTensorContents(fp32_contents=values.ravel().tolist())
    np.testing.assert_array_equal(
        ndarray_from_kserve("images", "FP32", [3, 784], contents, None), values.reshape(3, 784)
    )


def test_kserve_errors_name_the_input_and_problem():
    empty = service_pb2.InferTensorContents()
    with pytest.raises(InvalidInput, match="input 'images' has datatype INT32; expected UINT8"):
        ndarray_from_kserve("images", "INT32", [1, 28, 28], empty, None)
    with pytest.raises(InvalidInput, match="raw_input_contents has 5 bytes; shape \\[1, 28, 28\\] of UINT8 needs 784"):
        ndarray_from_kserve("images", "UINT8", [1, 28, 28], empty, b"12345")
    with pytest.raises(InvalidInput, match="0 values in contents.fp32_contents; shape \\[1, 784\\] holds 784"):
        ndarray_from_kserve("images", "FP32", [1, 784], empty, None)
    with pytest.raises(InvalidInput, match="UINT8 values must be in \\[0, 255\\], found 256"):
        ndarray_from_kserve("images", "UINT8", [1, 1], service_pb2.InferTensorContents(uint_contents=[256]), None)


def test_raw_output_bytes_decode_as_little_endian_row_major():
    probabilities = RNG.random((2, 10), dtype=np.float32)
    raw = kserve_raw_bytes(probabilities)
    np.testing.assert_array_equal(np.frombuffer(raw, np.float32).reshape(2, 10), probabilities)
