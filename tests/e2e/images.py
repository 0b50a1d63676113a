"""The images the e2e stage needs when no container registry is reachable.

- `debian:bookworm-slim`: debootstrapped from Debian's mirror and imported.
- Stand-ins built on it (deploy/ci/standins/), tagged with the names the real files use:
  the Dockerfile's FROM (python:3.11-slim-bookworm) and compose's Prometheus and nginx images.
- The wheelhouse pip installs from inside our image's build (deploy/wheelhouse/README.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from tests.e2e.engine import REPO_ROOT, DockerEngine, EngineError

BASE_IMAGE = "debian:bookworm-slim"
STANDINS = REPO_ROOT / "deploy" / "ci" / "standins"
WHEELHOUSE = REPO_ROOT / "deploy" / "wheelhouse"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SOURCES_LIST = """\
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
"""


def dockerfile_base_image() -> str:
    """The default of `ARG PYTHON_IMAGE` in deploy/Dockerfile: what the stand-in must be tagged."""
    text = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    return re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE).group(1)


def compose_image(service: str) -> str:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return compose["services"][service]["image"]


def build_base_image(engine: DockerEngine, mirror: str = DEBIAN_MIRROR) -> bool:
    """debootstraps Debian bookworm (minbase) into `debian:bookworm-slim`; False when it exists."""
    if engine.image_exists(BASE_IMAGE):
        return False
    with tempfile.TemporaryDirectory(prefix="mnist-e2e-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        if result.returncode != 0:
            raise EngineError(f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        (rootfs / "etc" / "apt" / "sources.list").write_text(SOURCES_LIST)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "--change", 'CMD ["bash"]', "--change", "ENV LANG=C.UTF-8", "-", BASE_IMAGE],
            stdin=tar.stdout,
            env=engine.env,
            capture_output=True,
            timeout=600,
        )
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise EngineError(f"docker import failed: {imported.stderr.decode(errors='replace')[-3000:]}")
    return True


def build_standins(engine: DockerEngine) -> dict[str, str]:
    """Builds the three stand-ins (Docker's layer cache makes reruns instant); {name: tag}."""
    tags = {"python": dockerfile_base_image(), "prometheus": compose_image("prometheus"), "nginx": compose_image("lb")}
    for name, tag in tags.items():
        engine.docker("build", "--network", "host", "--tag", tag, str(STANDINS / name), timeout=900)
    return tags


def fill_wheelhouse() -> list[Path]:
    """Downloads every wheel the image installs (CPU variant), with this machine's pip settings."""
    WHEELHOUSE.mkdir(exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--dest",
        str(WHEELHOUSE),
        "--constraint",
        str(REPO_ROOT / "requirements" / "lock.txt"),
        str(REPO_ROOT / "deploy" / "tensorflow-cpu"),
        str(REPO_ROOT / "proto"),
        str(REPO_ROOT / "client"),
        str(REPO_ROOT / "server"),
        str(REPO_ROOT / "trainer"),
        "setuptools>=68",
    ]  # the packages' build backend, for pip's isolated builds
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise EngineError(f"pip download failed:\n{result.stderr[-4000:]}")
    return sorted(WHEELHOUSE.glob("*.whl"))


def empty_wheelhouse() -> None:
    """Leaves deploy/wheelhouse as in git, so later user builds do not send the wheels along."""
    for entry in WHEELHOUSE.iterdir():
        if entry.name not in ("README.md", ".gitignore"):
            entry.unlink() if entry.is_file() else shutil.rmtree(entry)
