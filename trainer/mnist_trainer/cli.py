"""mnist-trainer: load (or download) the data, train, export a new version, write the report."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from . import __version__
from .datasets import DATASETS, default_data_dir
from .errors import TrainerError
from .recipes import ARCHITECTURES, RECIPES
from .settings import Settings

log = logging.getLogger("mnist_trainer")


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mnist-trainer",
        description="Train the tutorial MNIST CNN (or the linear model) and export it as a new version of a "
        "TensorFlow Serving model base path.",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="directory with the four IDX .gz files; missing ones are downloaded into it "
        "(default: $MNIST_DATA_DIR for mnist, $FASHION_MNIST_DATA_DIR for fashion-mnist, else "
        "~/.cache/mnist-serving/<dataset>); Debian's dataset-fashion-mnist package installs "
        "/usr/share/datasets/fashion-mnist",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        required=True,
        help="model base path; the export becomes <model-dir>/<N> with N = highest version + 1",
    )
    p.add_argument(
        "--dataset",
        choices=tuple(DATASETS),
        default="mnist",
        help="mnist (default) or fashion-mnist: class names and download mirrors",
    )
    p.add_argument("--model", choices=ARCHITECTURES, default="cnn", help="architecture (default: cnn)")
    p.add_argument(
        "--recipe",
        choices=RECIPES,
        default="default",
        help="default: Adam 3e-3 with warm-up and cosine decay, batch 128; on mnist 10 epochs "
        "with 2-pixel shifts, on fashion-mnist 20 epochs with 1-pixel shifts, left-right flips "
        "and label smoothing 0.1; tutorial: the tutorials' exact training (CNN: Adam 1e-4, "
        "batch 64, 10,000 steps)",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=_positive(int), help="train this many steps (default: the recipe's)")
    length.add_argument(
        "--epochs",
        type=_positive(float),
        help="train this many passes over the training split, e.g. 1 or 2.5 (default: the recipe's)",
    )
    p.add_argument("--batch-size", type=_positive(int), help="default: the recipe's")
    p.add_argument("--learning-rate", type=_positive(float), help="peak learning rate (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation, shuffling, augmentation")
    p.add_argument(
        "--skip-if-exists",
        action="store_true",
        help="do nothing (exit 0) when the model directory already holds a version",
    )
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the PNG report")
    p.add_argument(
        "--mirror",
        dest="mirrors",
        action="append",
        metavar="URL",
        help="base URL to download missing files from, tried in order; repeatable "
        "(default: $MNIST_TRAINER_MIRRORS, comma-separated, else the public mirrors)",
    )
    p.add_argument(
        "--threads",
        type=_positive(int),
        default=len(os.sched_getaffinity(0)),
        help="TensorFlow threads per operation (default: the CPUs this process may use)",
    )
    p.add_argument("--log-every", type=_positive(int), default=100, help="progress line every N steps")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def parse_settings(argv: list[str] | None = None) -> Settings:
    args = build_parser().parse_args(argv)
    return Settings(
        data_dir=args.data_dir or default_data_dir(args.dataset),
        model_dir=args.model_dir,
        dataset=args.dataset,
        model=args.model,
        recipe=args.recipe,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        skip_if_exists=args.skip_if_exists,
        report=args.report,
        mirrors=tuple(args.mirrors) if args.mirrors else None,
        threads=args.threads,
        log_every=args.log_every,
    )


def _configure_logging() -> None:
    # Progress goes to stdout; warnings and the final error line to stderr.
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class _Terminated(BaseException):
    """SIGTERM as an exception, so a stopped container job still removes its half-written staging directory."""


_stopped_by: list[int] = []  # the signal that stopped this run, if one did


def _stop(signum, frame):
    _stopped_by.append(signum)
    raise KeyboardInterrupt if signum == signal.SIGINT else _Terminated


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    _configure_logging()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    # TensorFlow's C++ start-up chatter would bury the progress lines; set before TensorFlow is imported.
    # 3, not 2: on a machine without a GPU, CUDA's failed cuInit logs at ERROR level, and only 3 hides it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        from .job import run  # imports TensorFlow: after argument errors are already reported

        return run(settings)
    except BaseException as exc:
        # Whatever comes out after a stop signal is that signal's doing, also when a library it interrupted
        # re-raises it as an error of its own (a CI run once ended 1, not 143; its stderr was not kept).
        if _stopped_by:
            print("mnist-trainer: stopped; nothing was exported", file=sys.stderr)
            return 128 + _stopped_by[0]
        if isinstance(exc, TrainerError):
            print(f"mnist-trainer: error: {exc}", file=sys.stderr)
            return exc.exit_code
        raise
