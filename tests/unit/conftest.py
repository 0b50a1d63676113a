"""In tests/unit, `server` is the in-process server on the fake model (tests/support/inprocess.py), one
per test module, never a real process; `channel` is a gRPC channel to it that lets the catalogues send
messages far over the server's limits, so that the server is the one to refuse them."""

from __future__ import annotations

import grpc
import pytest

from tests.support.catalogue import CHANNEL_OPTIONS
from tests.support.inprocess import InProcessServer


@pytest.fixture(scope="module")
def server():
    with InProcessServer() as running:
        yield running


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.target, options=CHANNEL_OPTIONS) as chan:
        yield chan
