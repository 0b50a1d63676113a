"""Settings: parsed once from the command line (flags.py: every flag and its environment variable),
validated once, then passed around frozen.

The repeatable `--model NAME=PATH` reads `MNIST_SERVER_MODEL` as a comma-separated list
(`a=/models/a,b=/models/b`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .flags import AUTH_EXEMPT_DEFAULT, ConfigError, build_parser, env_name

__all__ = [  # the flag-side names callers take from here with the settings
    "AUTH_EXEMPT_DEFAULT",
    "ConfigError",
    "ModelSource",
    "Settings",
    "VersionLabel",
    "env_name",
    "parse_settings",
]

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
VERSION_LABEL_PATTERN = re.compile(
    r"^(?:(?P<model>[^:=,]+):)?(?P<label>[A-Za-z][A-Za-z0-9_.-]{0,63})=(?P<version>[0-9]+)$"
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
    litert_max_batch_size: int | None = None  # None: measured per version at load (runtimes.calibrate)
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
