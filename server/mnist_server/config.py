"""Settings: parsed once from flags and environment, validated once, then passed around frozen.

Every flag `--some-flag` can also be set with the environment variable `MNIST_SERVER_SOME_FLAG`;
the flag wins. The repeatable `--model NAME=PATH` reads `MNIST_SERVER_MODEL` as a comma-separated
list (`a=/models/a,b=/models/b`).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ENV_PREFIX = "MNIST_SERVER_"
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
VERSION_LABEL_PATTERN = re.compile(
    r"^(?:(?P<model>[^:=,]+):)?(?P<label>[A-Za-z][A-Za-z0-9_.-]{0,63})=(?P<version>[0-9]+)$"
)


class ConfigError(ValueError):
    """A flag or environment variable is invalid; the message names it."""


# Callable without a bearer token by default: orchestrator probes and grpcurl's discovery.
AUTH_EXEMPT_DEFAULT = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


@dataclass(frozen=True)
class ModelSource:
    name: str
    base_path: Path


@dataclass(frozen=True)
class VersionLabel:
    """TF Serving's model_spec.version_label: a name for one version of one model."""

    model: str
    label: str
    version: int


@dataclass(frozen=True)
class Settings:
    models: tuple[ModelSource, ...]
    default_model: str
    host: str = "0.0.0.0"
    port: int = 8500
    http_port: int = 8501
    poll_interval_s: float = 2.0
    keep_versions: int = 1
    device: str = "auto"
    max_batch_size: int = 256
    batch_timeout_s: float = 0.0
    max_queue_images: int = 8192
    grace_period_s: float = 20.0
    log_format: str = "text"
    log_level: str = "INFO"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    event_loop: str = "uvloop"
    runtime: str = "auto"
    litert_max_batch_size: int = 32
    inline_max_batch_size: int | None = None  # None: the batches LiteRT computes
    adaptive_batch_window_s: float = 0.002
    max_concurrent_batches: int = 2
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_token_file: Path | None = None
    auth_exempt_services: tuple[str, ...] = AUTH_EXEMPT_DEFAULT
    max_concurrent_rpcs: int = 512
    max_concurrent_streams: int = 1024
    max_receive_message_bytes: int = 16 * 1024 * 1024
    max_images_per_request: int = 4096
    max_encoded_bytes: int = 4 * 1024 * 1024
    max_decoded_pixels: int = 16 * 1024 * 1024
    max_decoded_pixels_per_request: int = 64 * 1024 * 1024
    http_max_connections: int = 1024
    http_idle_timeout_s: float = 15.0
    http_body_timeout_s: float = 30.0
    version_labels: tuple[VersionLabel, ...] = ()

    @property
    def grpc_address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def env_name(flag: str) -> str:
    """`--max-batch-size` -> `MNIST_SERVER_MAX_BATCH_SIZE`."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # raise instead of exiting, so callers decide
        raise ConfigError(message)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise ValueError
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError
    return value


def _inline_batch(text: str) -> int | None:
    return None if text == "auto" else _non_negative_int(text)


_positive_int.__name__ = "positive integer"
_inline_batch.__name__ = "non-negative integer or 'auto'"
_non_negative_int.__name__ = "non-negative integer"
_non_negative_float.__name__ = "non-negative number"
_port.__name__ = "port (1-65535)"


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mnist-server",
        description="gRPC model server for MNIST SavedModels.",
        epilog="Every flag also reads MNIST_SERVER_<FLAG_IN_UPPER_SNAKE_CASE>; the flag wins.",
    )

    def add(flag: str, **kwargs):
        env = env_name(flag)
        if env in environ:
            kwargs["default"] = environ[env]  # strings are converted by `type`, errors name the flag
        kwargs["help"] = f"{kwargs.get('help', '')} [env {env}]".strip()
        parser.add_argument(flag, **kwargs)

    add("--model-dir", type=Path, help="base path of the model to serve (holds version dirs 1/, 2/, ...)")
    add("--model-name", default="mnist", help="name of the --model-dir model (default %(default)s)")
    parser.add_argument(
        "--model",
        dest="model",
        action="append",
        default=None,
        metavar="NAME=PATH",
        help=f"serve another model (repeatable) [env {env_name('--model')}, comma-separated]",
    )
    add(
        "--poll-interval",
        type=_non_negative_float,
        default=2.0,
        help="seconds between scans of the base paths for new versions (default %(default)s)",
    )
    add(
        "--keep-versions",
        type=_positive_int,
        default=1,
        help="how many of the newest versions stay loaded and addressable (default %(default)s)",
    )
    add(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="auto uses a GPU when TensorFlow sees one (default %(default)s)",
    )

    add("--host", default="0.0.0.0", help="address to listen on (default %(default)s)")
    add("--port", type=_port, default=8500, help="gRPC port (default %(default)s)")
    add(
        "--http-port",
        type=_port,
        default=8501,
        help="HTTP port: TF Serving REST, KServe v2 REST, image upload, the page at /, and /metrics, "
        "/healthz, /readyz (default %(default)s)",
    )

    add("--max-batch-size", type=_positive_int, default=256, help="most images in one model call (default %(default)s)")
    add(
        "--batch-timeout-ms",
        type=_non_negative_float,
        default=0.0,
        help="how long the first queued request may wait for company while the model is idle; "
        "0 = run at once, batches still form while the model is busy (default %(default)s)",
    )
    add(
        "--adaptive-batch-window-ms",
        type=_non_negative_float,
        default=2.0,
        help="with --batch-timeout-ms 0: when requests arrive at most half this apart on average, the "
        "first queued request waits for company while they keep coming, at most this long; a lone "
        "client never waits; 0 = off (default %(default)s)",
    )
    add(
        "--max-concurrent-batches",
        type=_positive_int,
        default=2,
        help="batches computed at the same time by the whole server, all models together (one model "
        "worker thread each; small batches on the event loop's thread count too); a model's next "
        "batch forms when one is free, round-robin between models (default %(default)s)",
    )
    add(
        "--max-queue-images",
        type=_positive_int,
        default=8192,
        help="images waiting for the model; beyond it requests get RESOURCE_EXHAUSTED (default %(default)s)",
    )
    add(
        "--grace-period",
        type=_non_negative_float,
        default=20.0,
        help="seconds to finish accepted requests after SIGTERM (default %(default)s)",
    )

    add(
        "--runtime",
        choices=("auto", "tensorflow", "litert"),
        default="auto",
        help="what computes a version: its SavedModel (tensorflow), its model.tflite (litert), or "
        "auto: LiteRT up to --litert-max-batch-size images per call, TensorFlow above, TensorFlow "
        "alone for a version without model.tflite (default %(default)s)",
    )
    add(
        "--litert-max-batch-size",
        type=_non_negative_int,
        default=32,
        help="--runtime auto: the largest batch LiteRT computes; 0 = TensorFlow only (default %(default)s)",
    )
    add(
        "--inline-max-batch-size",
        type=_inline_batch,
        default="auto",
        help="batches of at most this many images are computed on the event loop's thread instead "
        "of the model worker thread (saves two thread hand-offs per batch, blocks the loop while "
        "computing); 0 = never; auto = the batches LiteRT computes (default %(default)s)",
    )
    add(
        "--intra-op-threads",
        type=_non_negative_int,
        default=0,
        help="threads one model call may use (TensorFlow's intra-op pool, LiteRT's interpreter); "
        "0 = one per CPU core (default %(default)s)",
    )
    add(
        "--inter-op-threads",
        type=_non_negative_int,
        default=0,
        help="TensorFlow ops run in parallel; 0 = chosen for this machine (default %(default)s)",
    )

    # Security and limits: README "Reliability and security".
    add("--tls-cert", type=Path, help="PEM certificate chain: serve gRPC over TLS (with --tls-key)")
    add("--tls-key", type=Path, help="PEM private key of --tls-cert")
    add("--tls-client-ca", type=Path, help="PEM CA bundle: require client certificates signed by it (mutual TLS)")
    add(
        "--auth-token-file",
        type=Path,
        help="require `authorization: Bearer <token>`; one `TOKEN [SERVICE ...]` per line",
    )
    add(
        "--auth-exempt-services",
        default=",".join(AUTH_EXEMPT_DEFAULT),
        help="comma-separated gRPC services callable without a token; '' = none (default %(default)s)",
    )
    add(
        "--max-concurrent-rpcs",
        type=_positive_int,
        default=512,
        help="RPCs handled at once (all connections); beyond it RESOURCE_EXHAUSTED (default %(default)s)",
    )
    add(
        "--max-concurrent-streams",
        type=_positive_int,
        default=1024,
        help="HTTP/2 streams per client connection (keep it above --max-concurrent-rpcs: gRPC refuses "
        "streams beyond it with UNAVAILABLE instead of queueing them) (default %(default)s)",
    )

    add(
        "--max-receive-message-bytes",
        type=_positive_int,
        default=16 * 1024 * 1024,
        help="largest gRPC request or HTTP request body accepted (HTTP: 413 beyond it) (default %(default)s)",
    )
    add(
        "--max-images-per-request",
        type=_positive_int,
        default=4096,
        help="most images in one request (default %(default)s)",
    )
    add(
        "--max-encoded-bytes",
        type=_positive_int,
        default=4 * 1024 * 1024,
        help="largest PNG/JPEG file accepted (default %(default)s)",
    )
    add(
        "--max-decoded-pixels",
        type=_positive_int,
        default=16 * 1024 * 1024,
        help="largest width*height of a PNG/JPEG, checked before decoding (default %(default)s)",
    )
    add(
        "--max-decoded-pixels-per-request",
        type=_positive_int,
        default=64 * 1024 * 1024,
        help="largest sum of width*height over one request's PNG/JPEG images, checked from their headers "
        "before any is decoded: bounds the decoding CPU one request can cost (default %(default)s)",
    )

    add(
        "--http-max-connections",
        type=_positive_int,
        default=1024,
        help="open HTTP connections; beyond it a new connection gets 503 and is closed (default %(default)s)",
    )
    add(
        "--http-idle-timeout",
        type=_positive_float,
        default=15.0,
        help="seconds an HTTP connection may sit without a complete request (idle keep-alive, or headers "
        "sent half) before it is closed (default %(default)s)",
    )
    add(
        "--http-body-timeout",
        type=_positive_float,
        default=30.0,
        help="seconds to receive an HTTP request's body (slower: 408) and for the client to take the answer "
        "(slower: the connection is dropped) (default %(default)s)",
    )

    add(
        "--version-labels",
        default="",
        help="TF Serving version labels, comma-separated LABEL=VERSION for the default model or "
        "MODEL:LABEL=VERSION, e.g. stable=3,canary=4",
    )
    add(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="uvloop (libuv; less server CPU per request, measured in docs/benchmarks.md) or the standard library's "
        "asyncio loop (default %(default)s)",
    )
    add("--log-format", choices=("text", "json"), default="text", help="(default %(default)s)")
    add(
        "--log-level",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default="INFO",
        help="(default %(default)s)",
    )
    return parser


def _parse_model_spec(text: str) -> ModelSource:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"--model expects NAME=PATH, got {text!r}")
    return ModelSource(name.strip(), Path(path.strip()))


def _parse_version_labels(text: str, default_model: str) -> tuple[VersionLabel, ...]:
    labels = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = VERSION_LABEL_PATTERN.match(item)
        if not match or int(match["version"]) < 1:
            raise ConfigError(
                f"--version-labels expects LABEL=VERSION or MODEL:LABEL=VERSION with a positive version, got {item!r}"
            )
        labels.append(VersionLabel(match["model"] or default_model, match["label"], int(match["version"])))
    return tuple(labels)


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Flags (default: sys.argv[1:]) over environment (default: os.environ) -> validated Settings."""
    environ = os.environ if environ is None else environ
    args = build_parser(environ).parse_args(argv)

    specs = args.model
    if specs is None and environ.get(env_name("--model")):
        specs = [s for s in environ[env_name("--model")].split(",") if s.strip()]
    sources = []
    if args.model_dir is not None:
        sources.append(ModelSource(args.model_name, args.model_dir))
    sources.extend(_parse_model_spec(spec) for spec in specs or [])
    settings = Settings(
        models=tuple(sources),
        default_model=sources[0].name if sources else args.model_name,
        host=args.host,
        port=args.port,
        http_port=args.http_port,
        poll_interval_s=args.poll_interval,
        keep_versions=args.keep_versions,
        device=args.device,
        max_batch_size=args.max_batch_size,
        batch_timeout_s=args.batch_timeout_ms / 1000.0,
        max_queue_images=args.max_queue_images,
        grace_period_s=args.grace_period,
        log_format=args.log_format,
        log_level=args.log_level,
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
        event_loop=args.event_loop,
        runtime=args.runtime,
        litert_max_batch_size=args.litert_max_batch_size,
        inline_max_batch_size=args.inline_max_batch_size,
        adaptive_batch_window_s=args.adaptive_batch_window_ms / 1000.0,
        max_concurrent_batches=args.max_concurrent_batches,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        auth_token_file=args.auth_token_file,
        auth_exempt_services=tuple(s.strip() for s in args.auth_exempt_services.split(",") if s.strip()),
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        max_concurrent_streams=args.max_concurrent_streams,
        max_receive_message_bytes=args.max_receive_message_bytes,
        max_images_per_request=args.max_images_per_request,
        max_encoded_bytes=args.max_encoded_bytes,
        max_decoded_pixels=args.max_decoded_pixels,
        max_decoded_pixels_per_request=args.max_decoded_pixels_per_request,
        http_max_connections=args.http_max_connections,
        http_idle_timeout_s=args.http_idle_timeout,
        http_body_timeout_s=args.http_body_timeout,
        version_labels=_parse_version_labels(args.version_labels, sources[0].name if sources else args.model_name),
    )
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Cross-field checks; raises ConfigError naming the flag."""
    if not settings.models:
        raise ConfigError(
            f"no model to serve: give --model-dir PATH or --model NAME=PATH (or {env_name('--model-dir')})"
        )
    seen = set()
    for source in settings.models:
        if not MODEL_NAME_PATTERN.match(source.name):
            raise ConfigError(
                f"model name {source.name!r} is invalid: use letters, digits, '_', '.', '-' "
                "(at most 64, starting with a letter or digit)"
            )
        if source.name in seen:
            raise ConfigError(f"model name {source.name!r} is given twice")
        seen.add(source.name)
        if not source.base_path.is_dir():
            raise ConfigError(f"model base path {str(source.base_path)!r} for model {source.name!r} is not a directory")
    labelled = set()
    for entry in settings.version_labels:
        if entry.model not in seen:
            raise ConfigError(f"--version-labels names model {entry.model!r}, which is not served")
        if (entry.model, entry.label) in labelled:
            raise ConfigError(f"--version-labels gives label {entry.label!r} of model {entry.model!r} twice")
        labelled.add((entry.model, entry.label))
    if settings.port == settings.http_port:
        raise ConfigError(f"--port and --http-port are both {settings.port}")
    if settings.max_images_per_request > settings.max_queue_images:
        raise ConfigError(
            f"--max-images-per-request ({settings.max_images_per_request}) must not exceed "
            f"--max-queue-images ({settings.max_queue_images})"
        )
    if settings.max_decoded_pixels_per_request < settings.max_decoded_pixels:
        raise ConfigError(
            f"--max-decoded-pixels-per-request ({settings.max_decoded_pixels_per_request}) must "
            f"not be below --max-decoded-pixels ({settings.max_decoded_pixels})"
        )
    if settings.max_receive_message_bytes < 28 * 28 + 64:
        raise ConfigError("--max-receive-message-bytes is too small for even one image")
