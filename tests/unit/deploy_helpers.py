"""Helpers shared by the static checks of deploy/ (tests/unit/test_*config*.py, test_grafana_*.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from mnist_server.metrics import ServerMetrics

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
METRIC = re.compile(r"(?<![:\w])(mnist_serving_[a-z0-9_]+)(?![:\w])")  # not inside recording-rule names


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: make system-deps (Debian's prometheus package)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def server_metric_names() -> set[str]:
    """Every sample name the server can expose, from its own registry."""
    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_sum", "_count", "_created"],
        "gauge": [""],
        "summary": ["", "_sum", "_count", "_created"],
    }
    names = set()
    for family in ServerMetrics().registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, [""]))
    return names
