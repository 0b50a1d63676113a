"""`mnist-server` in a process of its own, serving the fake model (fake_model.py) at a chosen cost per
model call: for the real-process tests that need a model slow on purpose, whatever the machine.

    python -m tests.support.fake_model_server --compute-ms 5 --model-dir BASE [any mnist-server flag]

The base path holds fake versions (write_fake_versions). Everything but the model is the real server:
flags, gRPC and HTTP ports, batching, limits, metrics, signals and draining. TensorFlow's ~1 ms a call
(LiteRT's less) clears a backlog of a few hundred images before a loaded machine has even sent the next
calls; 5 ms a call keeps the same backlog for over a second.
"""

from __future__ import annotations

import argparse
import sys

from mnist_server.__main__ import run_event_loop
from mnist_server.app import serve
from mnist_server.config import parse_settings
from mnist_server.logs import configure_logging
from tests.support.fake_model import fake_loader


def main(argv: list[str]) -> int:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--compute-ms", type=float, default=0.0)
    options, server_flags = own.parse_known_args(argv)
    settings = parse_settings(server_flags)
    configure_logging(settings.log_format, settings.log_level)
    return run_event_loop(serve(settings, loader=fake_loader(options.compute_ms / 1000.0)), settings.event_loop)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
