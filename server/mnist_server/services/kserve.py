"""KServe v2 / Triton gRPC API (package `inference`, GRPCInferenceService) on our core: a thin adapter.

Health (ServerLive/ServerReady/ModelReady), metadata (ServerMetadata/ModelMetadata), ModelInfer and
ModelStreamInfer (typed `contents` or `raw_input_contents` in; `raw_output_contents` out; Triton's
classification extension via the output parameter `classification`), ModelConfig (a Triton-shaped
config, which perf_analyzer reads) and ModelStatistics (per-version counts and durations from the
batcher, see ../statistics.py). Repository, shared-memory, trace and log methods answer UNIMPLEMENTED.
Generated code comes from the `tritonclient` package; tensors go through tensors.py.
"""

from __future__ import annotations

import grpc
import numpy as np
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from .. import __version__
from ..config import Settings
from ..errors import InvalidInput, ModelNotFound, ModelUnavailable, to_status
from ..inference import InferenceCore, InferenceResult, ModelDescription
from ..metered import MeteredServer
from ..model import SignatureDescription
from ..statistics import Duration, VersionStatistics
from .streams import ordered_stream
from .tensors import KSERVE_DATATYPES, check_image_shape, kserve_raw_bytes, ndarray_from_kserve, to_images

SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "mnist-serving"
EXTENSIONS = ("classification", "model_configuration", "statistics")
PLATFORM = "tensorflow_savedmodel"
CLASSIFICATION = "classification"
_CONFIG_TYPES = {
    "uint8": model_config_pb2.TYPE_UINT8,
    "float32": model_config_pb2.TYPE_FP32,
    "int64": model_config_pb2.TYPE_INT64,
    "float64": model_config_pb2.TYPE_FP64,
}
_NOT_SUPPORTED = (
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
)


def _datatype(numpy_dtype: str) -> str:
    return KSERVE_DATATYPES[np.dtype(numpy_dtype)]


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: InferenceCore, settings: Settings):
        self._core = core
        self._settings = settings

    # --- health and metadata ---------------------------------------------------------------

    async def ServerLive(self, request, context) -> service_pb2.ServerLiveResponse:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context) -> service_pb2.ServerReadyResponse:
        return service_pb2.ServerReadyResponse(ready=self._core.ready)

    async def ModelReady(self, request: service_pb2.ModelReadyRequest, context) -> service_pb2.ModelReadyResponse:
        """A probe: an unknown model or version is simply not ready (as in Triton)."""
        try:
            self._describe(request.name, request.version)
        except (ModelNotFound, ModelUnavailable, InvalidInput):
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=not self._core.draining)

    async def ServerMetadata(self, request, context) -> service_pb2.ServerMetadataResponse:
        return service_pb2.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    async def ModelMetadata(
        self, request: service_pb2.ModelMetadataRequest, context
    ) -> service_pb2.ModelMetadataResponse:
        info = self._describe(request.name, request.version)
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=info.name,
            versions=[str(v) for v in info.loaded_versions],
            platform=PLATFORM,
            inputs=[tensor(name=t.name, datatype=_datatype(t.dtype), shape=t.shape) for t in info.signature.inputs],
            outputs=[tensor(name=t.name, datatype=_datatype(t.dtype), shape=t.shape) for t in info.signature.outputs],
        )

    async def ModelConfig(self, request: service_pb2.ModelConfigRequest, context) -> service_pb2.ModelConfigResponse:
        """What a Triton config.pbtxt for this model would say. Shapes leave out the batch axis
        (max_batch_size > 0); a per-image scalar output (classes) is dims [1] reshaped to []."""
        info = self._describe(request.name, request.version)
        s = self._settings

        def dims(shape) -> dict:
            rest = list(shape[1:])
            return {"dims": rest} if rest else {"dims": [1], "reshape": model_config_pb2.ModelTensorReshape(shape=[])}

        config = model_config_pb2.ModelConfig(
            name=info.name,
            platform=PLATFORM,
            backend=info.runtime,
            max_batch_size=info.max_batch_size,
            version_policy=model_config_pb2.ModelVersionPolicy(
                latest=model_config_pb2.ModelVersionPolicy.Latest(num_versions=s.keep_versions)
            ),
            input=[
                model_config_pb2.ModelInput(name=t.name, data_type=_CONFIG_TYPES[t.dtype], **dims(t.shape))
                for t in info.signature.inputs
            ],
            output=[
                model_config_pb2.ModelOutput(name=t.name, data_type=_CONFIG_TYPES[t.dtype], **dims(t.shape))
                for t in info.signature.outputs
            ],
            dynamic_batching=model_config_pb2.ModelDynamicBatching(
                max_queue_delay_microseconds=round(s.batch_timeout_s * 1e6)
            ),
            instance_group=[
                model_config_pb2.ModelInstanceGroup(
                    name=f"{info.name}_0",
                    count=1,
                    kind=model_config_pb2.ModelInstanceGroup.KIND_GPU
                    if info.device == "gpu"
                    else model_config_pb2.ModelInstanceGroup.KIND_CPU,
                )
            ],
        )
        return service_pb2.ModelConfigResponse(config=config)

    async def ModelStatistics(
        self, request: service_pb2.ModelStatisticsRequest, context
    ) -> service_pb2.ModelStatisticsResponse:
        """Every loaded version of one model (or of all models when `name` is empty)."""
        names = [self._core.model_name(request.name)] if request.name else self._core.model_names
        response = service_pb2.ModelStatisticsResponse()
        for name in names:
            versions = self._core.loaded_versions(name)
            if request.version:
                version = self._version(request.version)
                if version not in versions:
                    raise ModelNotFound(name, version, available=versions)
                versions = [version]
            for version in versions:
                response.model_stats.append(self._version_statistics(name, version))
        return response

    def _version_statistics(self, name: str, version: int) -> service_pb2.ModelStatistics:
        stats: VersionStatistics = self._core.statistics.get(name, version)

        def duration(value: Duration) -> service_pb2.StatisticDuration:
            return service_pb2.StatisticDuration(count=value.count, ns=value.ns)

        compute_io = service_pb2.StatisticDuration(count=stats.compute_infer.count, ns=0)
        return service_pb2.ModelStatistics(
            name=name,
            version=str(version),
            last_inference=stats.last_inference_ms,
            inference_count=stats.inference_count,
            execution_count=stats.execution_count,
            inference_stats=service_pb2.InferStatistics(
                success=duration(stats.success),
                fail=duration(stats.fail),
                queue=duration(stats.queue),
                compute_input=compute_io,
                compute_infer=duration(stats.compute_infer),
                compute_output=compute_io,
            ),
            batch_stats=[
                service_pb2.InferBatchStatistics(
                    batch_size=size,
                    compute_input=service_pb2.StatisticDuration(count=calls.count),
                    compute_infer=duration(calls),
                    compute_output=service_pb2.StatisticDuration(count=calls.count),
                )
                for size, calls in sorted(stats.batches.items())
            ],
        )

    # --- inference -----------------------------------------------------------------------------

    async def ModelInfer(
        self, request: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelInferResponse:
        return await self.infer(request, self._core.deadline_from_timeout(context.time_remaining()))

    async def ModelStreamInfer(self, request_iterator, context: grpc.aio.ServicerContext):
        """In order; a failed request answers with error_message and the stream goes on (as Triton)."""
        deadline = self._core.deadline_from_timeout(context.time_remaining())

        async def answer(request: service_pb2.ModelInferRequest) -> service_pb2.ModelStreamInferResponse:
            try:
                return service_pb2.ModelStreamInferResponse(infer_response=await self.infer(request, deadline))
            except Exception as exc:
                code, message = to_status(exc)
                return service_pb2.ModelStreamInferResponse(
                    error_message=f"{code.name}: {message}",
                    infer_response=service_pb2.ModelInferResponse(
                        model_name=request.model_name, model_version=request.model_version, id=request.id
                    ),
                )

        async for response in ordered_stream(self._core, request_iterator, answer):
            yield response

    async def infer(
        self, request: service_pb2.ModelInferRequest, deadline: float | None
    ) -> service_pb2.ModelInferResponse:
        """One inference, whatever carried it: ModelInfer, the stream, and KServe REST (web/kserve.py)."""
        version = self._version(request.model_version)
        name, signature = self._core.signature(request.model_name or None, version)
        images = self._images(request, name, signature)
        wanted = self._requested_outputs(request, name, signature)
        result = await self._core.infer(name, version, images, deadline)
        return _response(request.id, result, wanted)

    def _images(self, request: service_pb2.ModelInferRequest, name: str, signature: SignatureDescription) -> np.ndarray:
        expected = signature.input.name
        names = [tensor.name for tensor in request.inputs]
        if names != [expected]:
            raise InvalidInput(
                f"model '{name}' takes exactly one input, '{expected}'; the request has {names or 'none'}"
            )
        tensor = request.inputs[0]
        for key in tensor.parameters:
            if key.startswith("shared_memory"):
                raise InvalidInput(f"input '{expected}': shared memory is not supported; send the data in the request")
        raw = None
        if request.raw_input_contents:
            if len(request.raw_input_contents) != 1:
                raise InvalidInput(f"raw_input_contents has {len(request.raw_input_contents)} entries for 1 input")
            if tensor.HasField("contents"):
                raise InvalidInput(f"input '{expected}': give contents or raw_input_contents, not both")
            raw = request.raw_input_contents[0]
        shape = list(tensor.shape)
        check_image_shape(expected, shape)
        self._core.check_image_count(shape[0] if shape else 0)
        return to_images(expected, ndarray_from_kserve(expected, tensor.datatype, shape, tensor.contents, raw))

    @staticmethod
    def _requested_outputs(
        request: service_pb2.ModelInferRequest, model: str, signature: SignatureDescription
    ) -> list[tuple[str, int]]:
        """[(output name, classification top-k or 0)], every output when none is requested."""
        names = [t.name for t in signature.outputs]
        if not request.outputs:
            return [(name, 0) for name in names]
        wanted = []
        for output in request.outputs:
            if output.name not in names:
                raise InvalidInput(f"model '{model}' has no output '{output.name}'; outputs: {', '.join(names)}")
            for key in output.parameters:
                if key.startswith("shared_memory"):
                    raise InvalidInput(f"output '{output.name}': shared memory is not supported")
            top_k = output.parameters[CLASSIFICATION].int64_param if CLASSIFICATION in output.parameters else 0
            if top_k < 0 or (top_k and output.name != "probabilities"):
                raise InvalidInput(
                    f"output '{output.name}': classification needs a positive count and works on 'probabilities'"
                )
            wanted.append((output.name, top_k))
        return wanted

    def _describe(self, name: str, version: str) -> ModelDescription:
        return self._core.describe(name or None, self._version(version))

    @staticmethod
    def _version(text: str) -> int | None:
        if not text:
            return None
        if not text.isdigit() or int(text) < 1:
            raise InvalidInput(f"model_version must be empty (latest) or a positive integer, got '{text}'")
        return int(text)


def _response(
    request_id: str, result: InferenceResult, wanted: list[tuple[str, int]]
) -> service_pb2.ModelInferResponse:
    response = service_pb2.ModelInferResponse(
        model_name=result.model_name, model_version=str(result.version), id=request_id
    )
    for name, top_k in wanted:
        array = result.outputs[name]
        if top_k:
            response.outputs.add(name=name, datatype="BYTES", shape=[len(array), min(top_k, array.shape[1])])
            response.raw_output_contents.append(_classification(array, top_k, result.class_names))
        else:
            response.outputs.add(name=name, datatype=KSERVE_DATATYPES[array.dtype], shape=array.shape)
            response.raw_output_contents.append(kserve_raw_bytes(array))
    return response


def _classification(probabilities: np.ndarray, top_k: int, class_names: tuple[str, ...]) -> bytes:
    """Triton's classification extension: per image the top-k as "score:index:label" strings,
    serialized as BYTES (each element: 4-byte little-endian length, then the bytes)."""
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
    parts = []
    for row, indices in zip(probabilities, top):
        for index in indices:
            text = f"{row[index]:f}:{index}:{class_names[index]}".encode()
            parts.append(len(text).to_bytes(4, "little") + text)
    return b"".join(parts)


async def _unimplemented(self, request, context: grpc.aio.ServicerContext):
    await context.abort(
        grpc.StatusCode.UNIMPLEMENTED,
        "not supported by this server (models and versions come from --model-dir; "
        "no shared memory, trace or log settings)",
    )


for _method in _NOT_SUPPORTED:
    setattr(InferenceService, _method, _unimplemented)


def add_to_server(server: MeteredServer, core: InferenceCore, settings: Settings) -> tuple[str, ...]:
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(core, settings), server)
    return (SERVICE_NAME,)
