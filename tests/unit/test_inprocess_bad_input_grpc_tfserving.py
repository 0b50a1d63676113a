"""The bad-input catalogue, part 2: TensorFlow Serving's gRPC protocol (PredictionService, ModelService);
part 3, KServe v2's, is test_inprocess_bad_input_grpc_kserve.py.

Same rules as part 1 (test_inprocess_bad_input_grpc.py): exact code, a message naming the problem,
then a good request on the same protocol answered with the right labels (the fake model's rule: the
server runs in-process, tests/support/inprocess.py).
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.protobuf import wrappers_pb2
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from tests.support.catalogue import Case, assert_refused
from tests.support.fake_model import fake_classes
from tests.support.synthetic import synthetic_arrays

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PREDICT = "/tensorflow.serving.PredictionService/Predict"
TF_CLASSIFY = "/tensorflow.serving.PredictionService/Classify"
METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
STATUS = "/tensorflow.serving.ModelService/GetModelStatus"

DIGITS, _ = synthetic_arrays(4, seed=43)
ONE = DIGITS[0].tobytes()


def tensor(
    dtype=types_pb2.DT_UINT8, shape=(1, 28, 28), content: bytes | None = ONE, unknown_rank=False, **values
) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in shape], unknown_rank=unknown_rank
        ),
    )
    if values:
        for field, items in values.items():
            getattr(proto, field).extend(items)
    elif content is not None:
        proto.tensor_content = content
    return proto


def spec(name="mnist", signature="", version=None, label=None) -> model_pb2.ModelSpec:
    result = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        result.version.CopyFrom(wrappers_pb2.Int64Value(value=version))
    if label is not None:
        result.version_label = label
    return result


def predict(case_id: str, code, message: str, inputs=None, model_spec=None, output_filter=()) -> Case:
    request = predict_pb2.PredictRequest(model_spec=model_spec or spec(), output_filter=list(output_filter))
    for name, proto in ({"images": tensor()} if inputs is None else inputs).items():
        request.inputs[name].CopyFrom(proto)
    return Case(f"tfs-predict-{case_id}", PREDICT, request, code, message)


def example(**features) -> example_pb2.Example:
    return example_pb2.Example(features=feature_pb2.Features(feature=features))


def tf_classify(case_id: str, code, message: str, *examples: example_pb2.Example) -> Case:
    request = classification_pb2.ClassificationRequest(
        model_spec=spec(), input=input_pb2.Input(example_list=input_pb2.ExampleList(examples=list(examples)))
    )
    return Case(f"tfs-classify-{case_id}", TF_CLASSIFY, request, code, message)


PIXELS_784 = feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=DIGITS[0].ravel().tolist()))

TF_SERVING = [
    predict("no-inputs", INVALID, "takes exactly one input, 'images'; the request has none", inputs={}),
    predict(
        "unknown-input-name",
        INVALID,
        "takes exactly one input, 'images'; the request has ['pixels']",
        inputs={"pixels": tensor()},
    ),
    predict(
        "extra-input", INVALID, "the request has ['images', 'labels']", inputs={"images": tensor(), "labels": tensor()}
    ),
    predict(
        "dtype-string",
        INVALID,
        "input 'images' has dtype DT_STRING; expected DT_UINT8",
        inputs={"images": tensor(types_pb2.DT_STRING, content=None, string_val=[b"x"])},
    ),
    predict(
        "dtype-int32",
        INVALID,
        "input 'images' has dtype DT_INT32",
        inputs={"images": tensor(types_pb2.DT_INT32, content=bytes(784 * 4))},
    ),
    predict(
        "rank-2-wrong-width",
        INVALID,
        "input 'images' has shape [1, 28]; expected [N, 28, 28], [N, 784]",
        inputs={"images": tensor(shape=(1, 28), content=ONE[:28])},
    ),
    predict(
        "channels-3",
        INVALID,
        "has shape [1, 28, 28, 3]",
        inputs={"images": tensor(shape=(1, 28, 28, 3), content=ONE * 3)},
    ),
    predict("rank-5", INVALID, "has shape [1, 1, 28, 28, 1]", inputs={"images": tensor(shape=(1, 1, 28, 28, 1))}),
    predict(
        "scalar",
        INVALID,
        "input 'images' has shape []; expected [N, 28, 28], [N, 784] or [N, 28, 28, 1]",
        inputs={"images": tensor(shape=(), content=None, int_val=[3])},
    ),
    predict(
        "negative-batch-dimension",
        INVALID,
        "input 'images' has shape [-1, 28, 28] with a negative dimension",
        inputs={"images": tensor(shape=(-1, 28, 28))},
    ),
    predict(
        "negative-inner-dimension",
        INVALID,
        "input 'images' has shape [1, -28, 28]; expected",
        inputs={"images": tensor(shape=(1, -28, 28))},
    ),
    predict(
        "unknown-rank",
        INVALID,
        "input 'images' has unknown rank",
        inputs={"images": tensor(shape=(), unknown_rank=True)},
    ),
    predict(
        "content-short",
        INVALID,
        "tensor_content has 783 bytes; shape [1, 28, 28] of DT_UINT8 needs 784",
        inputs={"images": tensor(content=ONE[:-1])},
    ),
    predict(
        "content-float-as-uint8",
        INVALID,
        "tensor_content has 3136 bytes",
        inputs={"images": tensor(content=DIGITS[0].astype(np.float32).tobytes())},
    ),
    predict(
        "float-nan",
        INVALID,
        "input 'images' contains NaN or infinity",
        inputs={"images": tensor(types_pb2.DT_FLOAT, content=None, float_val=[0.5] * 783 + [float("nan")])},
    ),
    predict(
        "float-inf",
        INVALID,
        "contains NaN or infinity",
        inputs={"images": tensor(types_pb2.DT_FLOAT, content=np.full(784, np.inf, np.float32).tobytes())},
    ),
    predict(
        "float-0-255",
        INVALID,
        "float pixels must be in [0, 1] (pixel / 255), found values in [0, 255]",
        inputs={"images": tensor(types_pb2.DT_FLOAT, content=None, float_val=[0.0] * 783 + [255.0])},
    ),
    predict(
        "double-negative",
        INVALID,
        "found values in [-1, 0]",
        inputs={"images": tensor(types_pb2.DT_DOUBLE, content=None, double_val=[-1.0] + [0.0] * 783)},
    ),
    predict(
        "no-values",
        INVALID,
        "input 'images' carries no values: set tensor_content or int_val",
        inputs={"images": tensor(content=None)},
    ),
    predict(
        "too-many-values",
        INVALID,
        "has 785 values in int_val; shape [1, 28, 28] holds 784",
        inputs={"images": tensor(content=None, int_val=[0] * 785)},
    ),
    predict(
        "empty-batch", INVALID, "the request has no images", inputs={"images": tensor(shape=(0, 28, 28), content=b"")}
    ),
    predict(
        "100000-images",
        INVALID,
        "the request has 100000 images, the limit is 4096",
        inputs={"images": tensor(shape=(100_000, 28, 28), content=None, int_val=[0])},
    ),
    predict(
        "huge-inner-dimension",
        INVALID,
        "has shape [1, 28, 1099511627776]",
        inputs={"images": tensor(shape=(1, 28, 2**40), content=None, int_val=[0])},
    ),
    predict(
        "dimensions-overflowing-int64",
        INVALID,
        "has shape [1, 4294967296, 4294967296]",
        inputs={"images": tensor(shape=(1, 2**32, 2**32), content=None, int_val=[7])},
    ),
    predict(
        "unknown-model", NOT_FOUND, "model 'fashion' is not served; served models: mnist", model_spec=spec("fashion")
    ),
    predict(
        "unknown-version",
        NOT_FOUND,
        "version 9 of model 'mnist' is not loaded; loaded versions: 1",
        model_spec=spec(version=9),
    ),
    predict("version-0", INVALID, "model_spec.version must be a positive integer, got 0", model_spec=spec(version=0)),
    predict(
        "unknown-version-label",
        INVALID,
        "unknown version_label 'canary' for model 'mnist'",
        model_spec=spec(label="canary"),
    ),
    predict(
        "bad-signature-name",
        INVALID,
        "signature 'predict_images' not found in model 'mnist'; it serves 'serving_default'",
        model_spec=spec(signature="predict_images"),
    ),
    predict(
        "unknown-output-filter",
        INVALID,
        "output_filter names 'scores', not an output of signature",
        output_filter=["probabilities", "scores"],
    ),
    Case(
        "tfs-predict-garbage-bytes",
        PREDICT,
        b"\x0a\x80\x80\x80",
        INVALID,
        "not a valid tensorflow.serving.PredictRequest",
    ),
    tf_classify("empty-example-list", INVALID, "the request has no images"),
    Case(
        "tfs-classify-no-input",
        TF_CLASSIFY,
        classification_pb2.ClassificationRequest(model_spec=spec()),
        INVALID,
        "input has no examples: set input.example_list",
    ),
    tf_classify(
        "missing-feature",
        INVALID,
        "example 1, feature 'images' is missing",
        example(images=PIXELS_784),
        example(pixels=PIXELS_784),
    ),
    tf_classify(
        "int64-wrong-length",
        INVALID,
        "example 0, feature 'images': int64_list has 28 values, expected 784",
        example(images=feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[0] * 28))),
    ),
    tf_classify(
        "float-nan",
        INVALID,
        "contains NaN or infinity",
        example(images=feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[float("nan")] * 784))),
    ),
    tf_classify(
        "bytes-wrong-length",
        INVALID,
        "bytes_list must hold one value of 784 bytes",
        example(images=feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[ONE[:100]]))),
    ),
    Case(
        "tfs-metadata-no-field",
        METADATA,
        get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec()),
        INVALID,
        "metadata_field must be ['signature_def']",
    ),
    Case(
        "tfs-metadata-unknown-model",
        METADATA,
        get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec("nope"), metadata_field=["signature_def"]),
        NOT_FOUND,
        "model 'nope' is not served",
    ),
    Case(
        "tfs-status-unknown-version",
        STATUS,
        get_model_status_pb2.GetModelStatusRequest(model_spec=spec(version=5)),
        NOT_FOUND,
        "version 5 of model 'mnist' is not loaded",
    ),
    Case(
        "tfs-regress",
        "/tensorflow.serving.PredictionService/Regress",
        regression_pb2.RegressionRequest(),
        grpc.StatusCode.UNIMPLEMENTED,
        "this server serves classifiers",
    ),
]

CASES = TF_SERVING


@pytest.fixture(scope="module")
def good(channel):
    """A good request whose labels must match the answer given before any bad input."""
    request = predict_pb2.PredictRequest(model_spec=spec(), output_filter=["classes"])
    request.inputs["images"].CopyFrom(tensor(shape=DIGITS.shape, content=DIGITS.tobytes()))
    call = channel.unary_unary(
        PREDICT, request_serializer=None, response_deserializer=predict_pb2.PredictResponse.FromString
    )

    def labels() -> list[int]:
        return list(call(request.SerializeToString(), timeout=30).outputs["classes"].int64_val)

    reference = labels()
    assert reference == fake_classes(DIGITS).tolist()

    def check(case: Case) -> None:
        assert labels() == reference

    return check


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_request_is_refused_precisely_and_the_server_goes_on(channel, good, case):
    assert_refused(channel, case)
    good(case)
