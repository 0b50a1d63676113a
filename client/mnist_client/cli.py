"""mnist-client: classify images, inspect the server, check health, load-test.

    mnist-client classify digit.png            # file, label, probability
    mnist-client classify --idx t10k-images-idx3-ubyte.gz --labels t10k-labels-idx1-ubyte.gz
    mnist-client info
    mnist-client health                        # exit code 0 only when SERVING
    mnist-client bench --concurrency 32 --duration 10 --json result.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mnist_client.bench import BenchConfig, BenchError, format_result, random_digits, run_bench
from mnist_client.channel import DEFAULT_RETRIES, DEFAULT_TIMEOUT, TARGET_ENV, TlsConfig, default_target
from mnist_client.client import MnistClient
from mnist_client.errors import ClientError
from mnist_client.idx import IdxError, read_idx

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnist-client", description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=default_target(),
                        help=f"server HOST:PORT (default ${TARGET_ENV} or %(default)s)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="deadline of each call in seconds (default %(default)s)")
    parser.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                        help="retries on UNAVAILABLE, 0-4 (default %(default)s)")
    parser.add_argument("--model", default="", help="model name (default: the server's)")
    tls = parser.add_argument_group("TLS and authentication")
    tls.add_argument("--tls", action="store_true", help="use TLS with the system's root CAs")
    tls.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) to trust; implies --tls")
    tls.add_argument("--tls-cert", type=Path, help="client certificate (PEM) for mutual TLS")
    tls.add_argument("--tls-key", type=Path, help="client private key (PEM) for mutual TLS")
    tls.add_argument("--tls-server-name", help="name to verify in the server's certificate")
    tls.add_argument("--token-file", type=Path, help="file holding a bearer token to send")
    commands = parser.add_subparsers(dest="command", required=True)

    classify = commands.add_parser("classify", help="classify image files or an IDX file")
    classify.add_argument("files", nargs="*", type=Path, help="PNG/JPEG files")
    classify.add_argument("--idx", type=Path, help="IDX images file (e.g. t10k-images-idx3-ubyte.gz)")
    classify.add_argument("--labels", type=Path, help="IDX labels file: report accuracy")
    classify.add_argument("--count", type=int, help="classify only the first COUNT images of --idx")
    classify.add_argument("--version", type=int, default=0, help="model version (default: latest)")
    classify.add_argument("--json", action="store_true", help="print JSON")

    info = commands.add_parser("info", help="what the server serves")
    info.add_argument("--json", action="store_true", help="print JSON")

    health = commands.add_parser("health", help="exit 0 when the server is SERVING")
    health.add_argument("--service", default="", help="service name (default: overall health)")

    bench = commands.add_parser("bench", help="load-test the server")
    stop = bench.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, help="measure for this many seconds (default 10)")
    stop.add_argument("--requests", type=int, help="measure this many requests")
    bench.add_argument("--concurrency", type=int, default=8,
                       help="callers (closed loop) or max requests in flight (open loop); default %(default)s")
    bench.add_argument("--rate", type=float, help="open loop: send this many requests/s on a schedule")
    bench.add_argument("--batch", type=int, default=1, help="images per request (default %(default)s)")
    bench.add_argument("--stream", action="store_true", help="use the ClassifyStream RPC")
    bench.add_argument("--warmup", type=float, default=1.0, help="seconds not measured (default %(default)s)")
    bench.add_argument("--idx", type=Path, help="IDX images to send (default: random digits)")
    bench.add_argument("--encoding", choices=["packed", "pixels", "png"], default="packed",
                       help="how images travel (default %(default)s)")
    bench.add_argument("--processes", type=int, default=1,
                       help="load-generating processes (default %(default)s)")
    bench.add_argument("--connections", type=int, default=1,
                       help="TCP connections per process (default %(default)s)")
    bench.add_argument("--json", type=Path, dest="json_file", help="write the result to this file")
    bench.add_argument("--quiet", action="store_true", help="no live progress on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        tls, token = _tls(args), _token(args)
        if args.command == "bench":
            return _bench(args, tls, token)
        with MnistClient(args.target, timeout=args.timeout, retries=args.retries, tls=tls,
                         token=token, model=args.model) as client:
            if args.command == "classify":
                return _classify(parser, args, client)
            if args.command == "info":
                return _info(args, client)
            return _health(args, client)
    except ClientError as error:
        print(f"error: {error.code.name}: {error.details}", file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, OSError, BenchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


def _named(prediction) -> str:
    """A fourth column with the class name where it says more than the label (Fashion-MNIST)."""
    return "" if prediction.class_name == str(prediction.label) else f"\t{prediction.class_name}"


def _tls(args: argparse.Namespace) -> TlsConfig | None:
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name):
        return None
    return TlsConfig(root_ca=args.tls_ca, client_cert=args.tls_cert, client_key=args.tls_key,
                     server_name=args.tls_server_name)


def _token(args: argparse.Namespace) -> str | None:
    return args.token_file.read_text().strip() if args.token_file else None


def _classify(parser: argparse.ArgumentParser, args: argparse.Namespace, client: MnistClient) -> int:
    if bool(args.files) == bool(args.idx):
        parser.error("classify: give image FILEs or --idx, not both")
    if args.idx is None:
        predictions = client.classify(args.files, version=args.version)
        if args.json:
            print(json.dumps([{"file": str(f), **asdict(p)} for f, p in zip(args.files, predictions)]))
        else:
            for path, p in zip(args.files, predictions):
                print(f"{path}\t{p.label}\t{p.probability:.4f}{_named(p)}")
        return EXIT_OK
    return _classify_idx(args, client)


def _classify_idx(args: argparse.Namespace, client: MnistClient) -> int:
    try:
        images = read_idx(args.idx, args.count)
        labels = read_idx(args.labels, args.count) if args.labels else None
    except IdxError as error:
        raise ValueError(str(error)) from None
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{args.labels} holds {len(labels)} labels for {len(images)} images")
    started = time.monotonic()
    predictions = client.classify(images, version=args.version)
    elapsed = time.monotonic() - started
    predicted = [p.label for p in predictions]
    summary: dict[str, Any] = {"images": len(predictions), "seconds": round(elapsed, 3),
                               "model_version": predictions[0].model_version if predictions else None}
    if labels is not None:
        correct = sum(int(p == t) for p, t in zip(predicted, labels.tolist()))
        summary.update(correct=correct, accuracy=correct / len(labels) if len(labels) else None)
    if args.json:
        print(json.dumps({**summary, "labels": predicted}))
        return EXIT_OK
    if labels is None:
        for index, p in enumerate(predictions):
            print(f"{index}\t{p.label}\t{p.probability:.4f}{_named(p)}")
    print(f"classified {len(predictions)} images in {elapsed:.2f} s "
          f"(model version {summary['model_version']})", file=sys.stderr if labels is None else sys.stdout)
    if labels is not None:
        print(f"accuracy {summary['accuracy']:.4f} ({summary['correct']}/{len(labels)})")
    return EXIT_OK


def _info(args: argparse.Namespace, client: MnistClient) -> int:
    info = client.model_info()
    if args.json:
        print(json.dumps(asdict(info), indent=2))
        return EXIT_OK
    print(f"model        {info.name} version {info.version} (loaded: "
          f"{', '.join(map(str, info.loaded_versions))})")
    print(f"input        {info.input_dtype} {list(info.input_shape)}")
    print(f"classes      {', '.join(info.class_names)}")
    print(f"device       {info.device}, max batch {info.max_batch_size}")
    for key in sorted(info.metadata):
        value = info.metadata[key]
        if not isinstance(value, (dict, list)):
            print(f"metadata     {key}: {value}")
    return EXIT_OK


def _health(args: argparse.Namespace, client: MnistClient) -> int:
    status = client.health(args.service)
    print(status)
    return EXIT_OK if status == "SERVING" else EXIT_FAILED


def _bench(args: argparse.Namespace, tls: TlsConfig | None, token: str | None) -> int:
    images = read_idx(args.idx) if args.idx else random_digits()
    config = BenchConfig(
        target=args.target, concurrency=args.concurrency, duration=args.duration,
        requests=args.requests, batch=args.batch, rate=args.rate, stream=args.stream,
        warmup=args.warmup, processes=args.processes, connections=args.connections,
        encoding=args.encoding, timeout=args.timeout, tls=tls, token=token, model=args.model,
        images_source=str(args.idx) if args.idx else "random")
    result = run_bench(config, images, progress=None if args.quiet else sys.stderr)
    print(format_result(result))
    if args.json_file:
        args.json_file.write_text(json.dumps(result, indent=2) + "\n")
    return EXIT_OK if result["requests"]["ok"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
