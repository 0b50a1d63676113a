"""The command line: every flag of `mnist-server`, its type and its environment variable.

Every flag `--some-flag` can also be set with the environment variable `MNIST_SERVER_SOME_FLAG`;
the flag wins. What the flags mean together (Settings, cross-field checks) is config.py's.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

ENV_PREFIX = "MNIST_SERVER_"


class ConfigError(ValueError):
    """A flag or environment variable is invalid; the message names it."""


# Callable without a bearer token by default: orchestrator probes and grpcurl's discovery.
AUTH_EXEMPT_DEFAULT = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


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


def _count_or_auto(text: str) -> int | None:
    """A batch size, or None for "auto" (--litert-max-batch-size, --inline-max-batch-size)."""
    return None if text == "auto" else _non_negative_int(text)


_positive_int.__name__ = "positive integer"
_count_or_auto.__name__ = "non-negative integer or 'auto'"
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
        type=_count_or_auto,
        default="auto",
        help="--runtime auto: the largest batch LiteRT computes; 'auto' = measured for each version at load "
        "(the largest batch size at which LiteRT computes no slower than TensorFlow on this machine); "
        "0 = TensorFlow only (default %(default)s)",
    )
    add(
        "--inline-max-batch-size",
        type=_count_or_auto,
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
