"""A private Docker engine for the e2e stage: Debian's dockerd on its own socket, stopped afterwards.

It runs with --bridge=none --iptables=false (containers use the host network, traffic stays on
127.0.0.1) and keeps its images in a data root of its own, so a Docker the machine already runs is
neither used nor touched, and the stand-in images never shadow real ones there.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Kept between runs as a build cache (base image, layers); delete it to start from nothing.
DEFAULT_DATA_ROOT = Path(os.environ.get("MNIST_E2E_DOCKER_ROOT", "/var/lib/mnist-serving-e2e/docker"))
TOOLS = ("dockerd", "docker", "debootstrap")


class EngineError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    tools = [t for t in TOOLS if shutil.which(t) is None]
    if shutil.which("docker-compose") is None and not compose_v2_available():
        tools.append("docker-compose")
    return tools


def compose_v2_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


def install_system_deps() -> None:
    """Debian's docker.io, docker-compose and debootstrap (scripts/install-system-deps.sh)."""
    if not missing_tools():
        return
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "install-system-deps.sh")], capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0 or missing_tools():
        raise EngineError(f"could not install {missing_tools()}: {result.stderr[-3000:]}")


class DockerEngine:
    """`with DockerEngine() as engine:` a running dockerd; `engine.env` points clients at it."""

    def __init__(self, data_root: Path = DEFAULT_DATA_ROOT, start_timeout: float = 60.0, lock_timeout: float = 1800.0):
        self.data_root = data_root
        self.start_timeout = start_timeout
        self.lock_timeout = lock_timeout
        self._lock = None
        self.run_dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def env(self) -> dict[str, str]:
        """The environment for docker and compose commands: this engine, the classic builder
        (Debian's dockerd has no buildx; compose 1.29 builds through the API anyway)."""
        return {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_DOCKER_CLI_BUILD": "0",
        }

    def log_text(self) -> str:
        return (self.run_dir / "dockerd.log").read_text(errors="replace") if self.run_dir else ""

    def __enter__(self) -> DockerEngine:
        if os.geteuid() != 0:
            raise EngineError("the e2e stage starts its own dockerd, which needs root")
        self.data_root.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        # Short path: containerd's socket lives under the exec root and socket paths max out at 107 bytes.
        self.run_dir = Path(tempfile.mkdtemp(prefix="mnist-e2e-", dir="/tmp"))
        self._log = open(self.run_dir / "dockerd.log", "wb")
        cmd = [
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            f"--host=unix://{self.socket}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.run_dir / 'exec'}",
            f"--pidfile={self.run_dir / 'docker.pid'}",
            "--containerd-namespace=mnist-e2e",
            "--containerd-plugins-namespace=mnist-e2e-plugins",
        ]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_until_up()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _take_lock(self) -> None:
        """One dockerd per data root: a second e2e run on this machine waits for the first."""
        self._lock = open(self.data_root.parent / f"{self.data_root.name}.lock", "w")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EngineError(
                        f"another e2e run holds {self._lock.name} for over {self.lock_timeout}s"
                    ) from None
                time.sleep(1)

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(f"dockerd exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            if self.socket.exists() and self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise EngineError(f"dockerd not up within {self.start_timeout}s:\n{self.log_text()[-4000:]}")

    def __exit__(self, *exc_info) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # dockerd stops its containers and its containerd on SIGTERM.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        if self.run_dir is not None:
            # dockerd leaves its netns mount under the exec root; unmount what is left, deepest first.
            for mount in sorted(self._mounts_below(self.run_dir), reverse=True):
                subprocess.run(["umount", "--lazy", mount], capture_output=True)
            shutil.rmtree(self.run_dir, ignore_errors=True)
            if self.run_dir.exists():
                raise EngineError(f"could not remove {self.run_dir}: {self._mounts_below(self.run_dir)}")
        if self._lock is not None:
            self._lock.close()  # releases the flock

    @staticmethod
    def _mounts_below(path: Path) -> list[str]:
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts]
        return [p for p in points if p.startswith(f"{path}/")]

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120.0, input: bytes | None = None
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", *args], env=self.env, capture_output=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise EngineError(
                f"docker {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stderr.decode(errors='replace')[-4000:]}"
            )
        return result

    def image_exists(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0

    def image_size_bytes(self, ref: str) -> int:
        return int(self.docker("image", "inspect", "--format", "{{.Size}}", ref).stdout)
