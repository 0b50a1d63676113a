"""The real docker-compose.yml plus deploy/ci/compose.ci.yml, driven the way users drive compose.

Compose v2 (`docker compose`) when the docker CLI has it, else Debian's docker-compose 1.29
(MNIST_E2E_COMPOSE="docker-compose" or "docker compose" forces one).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.e2e.engine import REPO_ROOT, DockerEngine, EngineError, compose_v2_available
from tests.support.server_process import free_port

PROJECT = "mnist-e2e"
COMPOSE_FILES = ("docker-compose.yml", "deploy/ci/compose.ci.yml")
# Faster than the real 15 s so the check does not wait long for a scrape; nothing else differs.
CI_SCRAPE_INTERVAL = "5s"


def compose_command() -> list[str]:
    forced = os.environ.get("MNIST_E2E_COMPOSE")
    if forced:
        return shlex.split(forced)
    if compose_v2_available():
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise EngineError("neither `docker compose` nor `docker-compose` is installed")


@dataclass(frozen=True)
class Ports:
    server: int
    server_http: int
    lb: int
    prometheus: int
    lb_http: int

    @classmethod
    def free(cls) -> Ports:
        chosen: list[int] = []
        while len(chosen) < 5:
            port = free_port()
            if port not in chosen:
                chosen.append(port)
        return cls(*chosen)


def write_prometheus_config(dest: Path, ports: Ports) -> Path:
    """deploy/prometheus/ with each job's service discovery replaced by its loopback target."""
    source = REPO_ROOT / "deploy" / "prometheus"
    config = yaml.safe_load((source / "prometheus.yml").read_text())
    targets = {"mnist-server": f"127.0.0.1:{ports.server_http}", "prometheus": f"127.0.0.1:{ports.prometheus}"}
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name not in targets:
            raise EngineError(f"deploy/prometheus/prometheus.yml has a job the CI rewrite does not know: {name}")
        for key in [k for k in job if k.endswith("_sd_configs") or k == "static_configs"]:
            del job[key]
        job["static_configs"] = [{"targets": [targets[name]]}]
    config["global"]["scrape_interval"] = CI_SCRAPE_INTERVAL
    config["global"]["evaluation_interval"] = CI_SCRAPE_INTERVAL
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    for rule_file in config.get("rule_files", []):
        shutil.copy(source / rule_file, dest / rule_file)
    dest.chmod(0o755)
    for entry in dest.iterdir():
        entry.chmod(0o644)  # Prometheus runs as nobody
    return dest


class ComposeStack:
    def __init__(
        self,
        engine: DockerEngine,
        ports: Ports,
        prometheus_config: Path,
        mnist_data_dir: Path,
        fashion_data_dir: Path,
        train_steps: int,
    ):
        self.engine = engine
        self.ports = ports
        self.command = compose_command()
        self.env = {
            **engine.env,
            "MNIST_DATA_DIR": str(mnist_data_dir),
            "FASHION_MNIST_DATA_DIR": str(fashion_data_dir),
            "MNIST_E2E_TRAIN_STEPS": str(train_steps),
            "MNIST_E2E_SERVER_PORT": str(ports.server),
            "MNIST_E2E_SERVER_HTTP_PORT": str(ports.server_http),
            "MNIST_E2E_LB_PORT": str(ports.lb),
            "MNIST_E2E_LB_HTTP_PORT": str(ports.lb_http),
            "MNIST_E2E_PROMETHEUS_PORT": str(ports.prometheus),
            "MNIST_E2E_PROMETHEUS_CONFIG": str(prometheus_config),
        }

    def compose(self, *args: str, timeout: float = 600.0, check: bool = True) -> subprocess.CompletedProcess:
        files = [arg for f in COMPOSE_FILES for arg in ("-f", f)]
        cmd = [*self.command, "--project-name", PROJECT, *files, *args]
        result = subprocess.run(cmd, cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise EngineError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                f"{result.stderr[-5000:]}\n{self.logs()}"
            )
        return result

    def container(self, service: str) -> dict:
        ids = self.compose("ps", "--all", "-q", service).stdout.split()
        if len(ids) != 1:
            raise EngineError(f"expected one {service} container, found {ids}")
        return json.loads(self.engine.docker("inspect", ids[0]).stdout)[0]

    def logs(self, tail: int = 80) -> str:
        files = [arg for f in COMPOSE_FILES for arg in ("-f", f)]
        result = subprocess.run(
            [*self.command, "--project-name", PROJECT, *files, "logs", "--no-color", f"--tail={tail}"],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return f"--- compose logs (last {tail} lines per service) ---\n{result.stdout[-12000:]}"

    def down(self) -> None:
        """Removes containers, networks and volumes, also those of profiles that never started."""
        self.compose(
            "--profile", "grafana", "down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=300, check=False
        )


def prometheus_get(port: int, path: str, **params: str) -> dict:
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise EngineError(f"Prometheus {path}: {body}")
    return body["data"]
