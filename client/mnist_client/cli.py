"""mnist-client: classify images, inspect the server, check health, load-test.

mnist-client classify digit.png            # file, label, probability
mnist-client classify --idx t10k-images-idx3-ubyte.gz --labels t10k-labels-idx1-ubyte.gz
mnist-client info
mnist-client health                        # exit code 0 only when SERVING; answers at once
mnist-client health --wait --timeout 60    # waits until SERVING (a server still starting)
mnist-client bench --concurrency 32 --duration 10 --json result.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import mnist_client
from mnist_client.bench import BenchConfig, BenchError, format_result, random_digits, run_bench
from mnist_client.channel import DEFAULT_RETRIES, DEFAULT_TIMEOUT, TARGET_ENV, TlsConfig, default_target
from mnist_client.cli_classify import classify_files, classify_idx
from mnist_client.client import MnistClient
from mnist_client.errors import ClientError
from mnist_serving.idx import read_idx
from mnist_serving.v1 import classifier_pb2

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def version_text() -> str:
    """The client's version and the API it speaks (the proto package)."""
    try:
        version = metadata.version("mnist-client")
    except metadata.PackageNotFoundError:  # run from a source tree
        version = mnist_client.__version__
    return f"mnist-client {version} (API {classifier_pb2.DESCRIPTOR.package})"


def add_connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes. The top-level parser holds the defaults; each command
    repeats the options without defaults (SUPPRESS), so given after the command they override
    and left out they keep the top level's value (including $MNIST_CLIENT_TARGET)."""

    def default(value):
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--target",
        default=default(default_target()),
        help=f"server HOST:PORT (default ${TARGET_ENV} or {default_target()})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=default(DEFAULT_TIMEOUT),
        help=f"deadline of each call in seconds (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=default(DEFAULT_RETRIES),
        help=f"retries on UNAVAILABLE, 0-4 (default {DEFAULT_RETRIES})",
    )
    parser.add_argument("--model", default=default(""), help="model name (default: the server's)")
    tls = parser.add_argument_group("TLS and authentication")
    tls.add_argument("--tls", action="store_true", default=default(False), help="use TLS with the system's root CAs")
    for flag, text in (
        ("--tls-ca", "CA certificate (PEM) to trust; implies --tls"),
        ("--tls-cert", "client certificate (PEM) for mutual TLS"),
        ("--tls-key", "client private key (PEM) for mutual TLS"),
        ("--token-file", "file holding a bearer token to send"),
    ):
        tls.add_argument(flag, type=Path, default=default(None), help=text)
    tls.add_argument("--tls-server-name", default=default(None), help="name to verify in the server's certificate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnist-client", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=version_text())
    add_connection_options(parser, defaults=True)
    per_command = argparse.ArgumentParser(add_help=False)
    add_connection_options(per_command, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, parents=[per_command])

    classify = command("classify", "classify image files or an IDX file")
    classify.add_argument("files", nargs="*", type=Path, help="PNG/JPEG files")
    classify.add_argument("--idx", type=Path, help="IDX images file (e.g. t10k-images-idx3-ubyte.gz)")
    classify.add_argument("--labels", type=Path, help="IDX labels file: report accuracy")
    classify.add_argument("--count", type=int, help="classify only the first COUNT images of --idx")
    classify.add_argument("--version", type=int, default=0, help="model version (default: latest)")
    classify.add_argument("--json", action="store_true", help="print JSON")

    info = command("info", "what the server serves")
    info.add_argument("--json", action="store_true", help="print JSON")

    health = command("health", "exit 0 when the server is SERVING, else 1")
    health.add_argument("--service", default="", help="service name (default: overall health)")
    health.add_argument(
        "--wait", action="store_true", help="wait until SERVING or --timeout passes (default: answer at once)"
    )

    bench = command("bench", "load-test the server")
    stop = bench.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, help="measure for this many seconds (default 10)")
    stop.add_argument("--requests", type=int, help="measure this many requests")
    bench.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="callers (closed loop) or max requests in flight (open loop); default %(default)s",
    )
    bench.add_argument("--rate", type=float, help="open loop: send this many requests/s on a schedule")
    bench.add_argument("--batch", type=int, default=1, help="images per request (default %(default)s)")
    bench.add_argument("--stream", action="store_true", help="use the ClassifyStream RPC")
    bench.add_argument("--warmup", type=float, default=1.0, help="seconds not measured (default %(default)s)")
    bench.add_argument("--idx", type=Path, help="IDX images to send (default: random digits)")
    bench.add_argument(
        "--encoding",
        choices=["packed", "pixels", "png"],
        default="packed",
        help="how images travel (default %(default)s)",
    )
    bench.add_argument("--processes", type=int, default=1, help="load-generating processes (default %(default)s)")
    bench.add_argument("--connections", type=int, default=1, help="TCP connections per process (default %(default)s)")
    bench.add_argument("--json", type=Path, dest="json_file", help="write the result to this file")
    bench.add_argument("--quiet", action="store_true", help="no live progress on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = _run(parser, args)
        sys.stdout.flush()  # a reader that went away (`| head -1`) shows here, not at exit
        return status
    except BrokenPipeError:
        # The reader has all it wanted: exit without a traceback or a message (the Python docs' recipe:
        # stdout goes to /dev/null so the interpreter's own flush at exit does not fail again).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        tls, token = _tls(args), _token(args)
        if args.command == "bench":
            return _bench(args, tls, token)
        with MnistClient(
            args.target, timeout=args.timeout, retries=args.retries, tls=tls, token=token, model=args.model
        ) as client:
            if args.command == "classify":
                return _classify(parser, args, client)
            if args.command == "info":
                return _info(args, client)
            return _health(args, client)
    except ClientError as error:
        print(f"error: {error.code.name}: {error.details}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        raise
    except (ValueError, OSError, BenchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


def _tls(args: argparse.Namespace) -> TlsConfig | None:
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name):
        return None
    return TlsConfig(
        root_ca=args.tls_ca, client_cert=args.tls_cert, client_key=args.tls_key, server_name=args.tls_server_name
    )


def _token(args: argparse.Namespace) -> str | None:
    return args.token_file.read_text().strip() if args.token_file else None


def _classify(parser: argparse.ArgumentParser, args: argparse.Namespace, client: MnistClient) -> int:
    if not args.files and args.idx is None:
        parser.error(
            "classify: give image FILEs (PNG/JPEG), or --idx IMAGES_FILE (e.g. mnist-client classify digit.png)"
        )
    if args.files and args.idx is not None:
        parser.error("classify: give image FILEs or --idx, not both")
    if args.idx is None:
        return classify_files(client, args.files, version=args.version, as_json=args.json)
    return classify_idx(client, args.idx, args.labels, args.count, version=args.version, as_json=args.json)


def _info(args: argparse.Namespace, client: MnistClient) -> int:
    info = client.model_info()
    if args.json:
        print(json.dumps(asdict(info), indent=2))
        return EXIT_OK
    print(f"model        {info.name} version {info.version} (loaded: {', '.join(map(str, info.loaded_versions))})")
    print(f"input        {info.input_dtype} {list(info.input_shape)}")
    print(f"classes      {', '.join(info.class_names)}")
    print(f"device       {info.device}, max batch {info.max_batch_size}")
    for key in sorted(info.metadata):
        value = info.metadata[key]
        if not isinstance(value, (dict, list)):
            print(f"metadata     {key}: {value}")
    return EXIT_OK


def _health(args: argparse.Namespace, client: MnistClient) -> int:
    """Exit 0 when SERVING, 1 otherwise (unreachable included): what a container HEALTHCHECK
    reads; Docker reserves exit code 2."""
    status = client.health(args.service, wait=args.wait)
    print(status)
    return EXIT_OK if status == "SERVING" else EXIT_FAILED


def _bench(args: argparse.Namespace, tls: TlsConfig | None, token: str | None) -> int:
    images = read_idx(args.idx) if args.idx else random_digits()
    config = BenchConfig(
        target=args.target,
        concurrency=args.concurrency,
        duration=args.duration,
        requests=args.requests,
        batch=args.batch,
        rate=args.rate,
        stream=args.stream,
        warmup=args.warmup,
        processes=args.processes,
        connections=args.connections,
        encoding=args.encoding,
        timeout=args.timeout,
        tls=tls,
        token=token,
        model=args.model,
        images_source=str(args.idx) if args.idx else "random",
    )
    result = run_bench(config, images, progress=None if args.quiet else sys.stderr)
    print(format_result(result))
    if args.json_file:
        args.json_file.write_text(json.dumps(result, indent=2) + "\n")
    return EXIT_OK if result["requests"]["ok"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
