"""Fixtures of the e2e stage: engine -> images -> running compose stack, each timed and always cleaned up.

Every step prints its duration as it ends and again in a table at the end of the run (also on failure).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e import images
from tests.e2e.engine import DockerEngine, install_system_deps, missing_tools
from tests.e2e.stack import ComposeStack, Ports, write_prometheus_config

APP_IMAGE = images.compose_image("server")
# Enough for >= 95% on the test set with the default recipe, short enough for CI.
TRAIN_STEPS = int(os.environ.get("MNIST_E2E_TRAIN_STEPS", "300"))

_steps: list[tuple[str, float, str]] = []
_facts: list[str] = []
_reporter = None


def pytest_configure(config):
    global _reporter
    _reporter = config.pluginmanager.get_plugin("terminalreporter")


def _say(line: str) -> None:
    if _reporter is not None:
        _reporter.write_line(f"[e2e] {line}")


@contextlib.contextmanager
def step(name: str):
    """Times one step; the outcome is recorded even when it raises."""
    start = time.monotonic()
    outcome = "failed"
    try:
        yield
        outcome = "ok"
    finally:
        seconds = time.monotonic() - start
        _steps.append((name, seconds, outcome))
        _say(f"{name}: {seconds:.1f} s ({outcome})")


def fact(line: str) -> None:
    _facts.append(line)
    _say(line)


def pytest_runtest_logreport(report):
    if report.when == "call":
        name = f"check {report.nodeid.split('::')[-1]}"
        _steps.append((name, report.duration, report.outcome))


def pytest_terminal_summary(terminalreporter):
    if not _steps:
        return
    terminalreporter.section("e2e step durations")
    for name, seconds, outcome in _steps:
        terminalreporter.write_line(f"{seconds:8.1f} s  {outcome:6}  {name}")
    terminalreporter.write_line(f"{sum(s for _, s, _ in _steps):8.1f} s  total")
    for line in _facts:
        terminalreporter.write_line(line)


def _seconds_between(start: str, end: str) -> float:
    """Docker's RFC 3339 timestamps carry nanoseconds; datetime takes microseconds."""

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", text).replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


@pytest.fixture(scope="session")
def e2e_fact():
    """Tests report a measured figure with it (printed now and in the final table)."""
    return fact


@pytest.fixture(scope="session")
def docker_engine():
    if missing_tools():
        with step(f"install {' '.join(missing_tools())} (Debian packages)"):
            install_system_deps()
    with step("start dockerd (--bridge=none --iptables=false)"):
        engine = DockerEngine().__enter__()
    try:
        yield engine
    finally:
        with step("stop dockerd"):
            engine.__exit__(None, None, None)


@pytest.fixture(scope="session")
def e2e_images(docker_engine):
    """Base image, stand-ins and the wheelhouse; the app image itself is built by compose."""
    with step("base image debian:bookworm-slim (debootstrap + import, skipped when cached)"):
        built = images.build_base_image(docker_engine)
        fact(f"base image: {'built with debootstrap' if built else 'cached from an earlier run'}")
    with step("stand-in images (python, prometheus, nginx) from Debian packages"):
        tags = images.build_standins(docker_engine)
    try:
        with step("wheelhouse (pip download outside the build)"):
            wheels = images.fill_wheelhouse()
        fact(f"wheelhouse: {len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 2**20:.0f} MiB")
        yield tags
    finally:
        images.empty_wheelhouse()


@pytest.fixture(scope="session")
def compose_stack(docker_engine, e2e_images, mnist_dir, fashion_mnist_dir, tmp_path_factory):
    ports = Ports.free()
    config_dir = write_prometheus_config(tmp_path_factory.mktemp("prometheus-ci"), ports)
    stack = ComposeStack(docker_engine, ports, config_dir, Path(mnist_dir), Path(fashion_mnist_dir), TRAIN_STEPS)
    fact(f"compose: {' '.join(stack.command)}; ports {ports}")
    try:
        with step("compose build (our image, from the wheelhouse)"):
            stack.compose("build", timeout=1800)
        for ref in [APP_IMAGE, *e2e_images.values()]:
            fact(f"image size {ref}: {docker_engine.image_size_bytes(ref) / 1e6:.0f} MB")
        with step(f"compose up -d (trainers {TRAIN_STEPS} steps each, then server healthy, then lb, prometheus)"):
            stack.compose("up", "-d", timeout=2400)
        for service in ("trainer", "trainer-fashion"):
            trainer = stack.container(service)["State"]
            fact(
                f"{service} container: exit {trainer['ExitCode']} after "
                f"{_seconds_between(trainer['StartedAt'], trainer['FinishedAt']):.1f} s (inside compose up)"
            )
        yield stack
    finally:
        with step("compose down --volumes"):
            stack.down()
