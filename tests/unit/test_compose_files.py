"""docker-compose.yml and its override files, as compose itself merges them (`config`), with every
Compose implementation on this machine (Debian's docker-compose 1.29; Compose v2 where the docker CLI
has it); and the Dockerfile's promises (non-root, healthcheck, the CPU TensorFlow alias, build context)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from mnist_server.config import Settings
from tests.unit.deploy_helpers import REPO_ROOT

DOCKERFILE = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
CI_ENV = {
    "MNIST_DATA_DIR": "/srv/mnist",
    "FASHION_MNIST_DATA_DIR": "/srv/fashion-mnist",
    "MNIST_E2E_SERVER_PORT": "18500",
    "MNIST_E2E_SERVER_HTTP_PORT": "18501",
    "MNIST_E2E_LB_PORT": "18502",
    "MNIST_E2E_PROMETHEUS_PORT": "18503",
    "MNIST_E2E_LB_HTTP_PORT": "18504",
    "MNIST_E2E_PROMETHEUS_CONFIG": "/srv/prometheus-ci",
}
USER_FILES = ["docker-compose.yml", "docker-compose.override.yml"]
GPU_FILES = [*USER_FILES, "deploy/compose.gpu.yml"]
CI_FILES = ["docker-compose.yml", "deploy/ci/compose.ci.yml"]


def implementations() -> list[list[str]]:
    found = []
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        found.append(["docker", "compose"])
    return found


IMPLEMENTATIONS = implementations()


def test_a_compose_implementation_is_installed():
    assert IMPLEMENTATIONS, "no compose: make system-deps installs Debian's docker-compose"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without MNIST_* variables (compose interpolates them), plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MNIST_")}, **extra}


def merged(
    compose: list[str], files: list[str], env: dict[str, str] | None = None, profiles: tuple[str, ...] = ("grafana",)
) -> dict:
    args = [a for f in files for a in ("-f", f)] + [a for p in profiles for a in ("--profile", p)]
    result = subprocess.run(
        [*compose, *args, "config"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(**(env or {})),
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def ports_of(service: dict) -> set[str]:
    """Published ports, in both compose versions' spellings, as "host_ip:published:target"."""
    out = set()
    for p in service.get("ports", []):
        if isinstance(p, str):
            out.add(p.removesuffix("/tcp") if p.count(":") == 2 else f":{p.removesuffix('/tcp')}")
        else:
            out.add(f"{p.get('host_ip', '')}:{p['published']}:{p['target']}")
    return out


def volume_modes(service: dict) -> dict[str, tuple[str, bool]]:
    """target -> (source, read_only) in both compose versions' spellings."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            out[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
        else:
            out[v["target"]] = (v["source"], bool(v.get("read_only")))
    return out


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda c: " ".join(c))
def compose(request):
    return request.param


def test_what_users_run(compose):
    services = merged(compose, USER_FILES)["services"]
    trainer, server, lb = services["trainer"], services["server"], services["lb"]
    assert trainer["entrypoint"] == ["mnist-trainer"]
    assert "--skip-if-exists" in trainer["command"]
    assert trainer["command"][trainer["command"].index("--model-dir") + 1] == "/models/mnist"
    models = volume_modes(trainer)["/models"]
    assert models[1] is False and models[0].endswith("models")
    assert server["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    # two models side by side: the second trainer writes the base path the server's --model names
    fashion = services["trainer-fashion"]
    assert server["depends_on"]["trainer-fashion"]["condition"] == "service_completed_successfully"
    assert fashion["command"][fashion["command"].index("--dataset") + 1] == "fashion-mnist"
    base = fashion["command"][fashion["command"].index("--model-dir") + 1]
    assert server["environment"]["MNIST_SERVER_MODEL"] == f"fashion-mnist={base}"
    assert volume_modes(server)["/models"][1] is True  # the server only reads versions
    assert server["image"] == trainer["image"]  # one image, two commands
    assert "ports" not in server  # reached through lb, so it can scale
    assert lb["depends_on"]["server"]["condition"] == "service_healthy"
    assert lb["environment"]["MNIST_UPSTREAM"] == "server:8500"
    assert lb["environment"]["MNIST_HTTP_UPSTREAM"] == "server:8501"
    assert ports_of(lb) == {":8500:8500", ":8501:8501"}
    assert ports_of(services["prometheus"]) == {"127.0.0.1:9090:9090"}
    assert ports_of(services["grafana"]) == {"127.0.0.1:3000:3000"}
    assert services["grafana"]["profiles"] == ["grafana"]


def test_docker_stops_the_server_only_after_its_drain(compose):
    server = merged(compose, USER_FILES)["services"]["server"]
    grace = server["stop_grace_period"]
    seconds = float(grace.rstrip("s")) if isinstance(grace, str) else grace / 1e9  # "30s" or nanoseconds
    assert seconds > Settings.__dataclass_fields__["grace_period_s"].default


def test_the_gpu_override_reserves_a_gpu_for_the_server(compose):
    server = merged(compose, GPU_FILES)["services"]["server"]
    assert server["build"]["args"]["TENSORFLOW"] == "gpu"
    assert server["image"].endswith("-gpu")
    (device,) = server["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1


def test_the_ci_override_puts_every_service_on_the_host_network(compose):
    everything = merged(compose, CI_FILES, CI_ENV, profiles=())["services"]
    # Compose 1.29 lists services of inactive profiles too; v2 leaves them out. Grafana never runs in CI.
    services = {name: s for name, s in everything.items() if not s.get("profiles")}
    assert set(services) == {"trainer", "trainer-fashion", "server", "lb", "prometheus"}
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        assert not service.get("ports"), name
    assert volume_modes(services["trainer"])["/data/mnist"] == ("/srv/mnist", True)
    assert volume_modes(services["trainer-fashion"])["/data/fashion-mnist"] == ("/srv/fashion-mnist", True)
    assert services["server"]["environment"]["MNIST_SERVER_HOST"] == "127.0.0.1"
    assert services["lb"]["environment"]["MNIST_UPSTREAM"] == "127.0.0.1:18500"
    assert services["lb"]["environment"]["MNIST_LB_LISTEN"] == "127.0.0.1:18502"
    assert services["lb"]["environment"]["MNIST_HTTP_UPSTREAM"] == "127.0.0.1:18501"
    assert services["lb"]["environment"]["MNIST_LB_HTTP_LISTEN"] == "127.0.0.1:18504"
    assert "--web.listen-address=127.0.0.1:18503" in services["prometheus"]["command"]
    # Everything else is the real file's: same image, same commands, same dependencies.
    user = merged(compose, USER_FILES)["services"]
    for name in ("server", "lb"):
        assert services[name]["depends_on"] == user[name]["depends_on"]
        assert services[name]["image"] == user[name]["image"]


def test_the_ci_override_needs_its_variables(compose):
    files = [a for f in CI_FILES for a in ("-f", f)]
    result = subprocess.run(
        [*compose, *files, "config"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env=clean_env()
    )
    assert result.returncode != 0
    assert "MNIST_DATA_DIR" in result.stderr or "MNIST_E2E" in result.stderr


def final_stage() -> str:
    return DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck():
    stage = final_stage()
    user = re.search(r"^USER (\d+):(\d+)$", stage, re.MULTILINE)
    assert user and int(user.group(1)) != 0
    assert re.search(r"^HEALTHCHECK .*\n?.*mnist-client --target .* health", stage, re.MULTILINE)
    assert 'ENTRYPOINT ["mnist-server"]' in stage
    assert "pip install" not in stage.split("COPY --from=wheels")[0]  # nothing built in the final stage


def test_the_cpu_alias_matches_the_locked_tensorflow():
    alias = tomllib.loads((REPO_ROOT / "deploy" / "tensorflow-cpu" / "pyproject.toml").read_text())["project"]
    locked = re.search(
        r"^tensorflow==(\S+)$", (REPO_ROOT / "requirements" / "lock.txt").read_text(), re.MULTILINE
    ).group(1)
    assert alias["name"] == "tensorflow"
    assert alias["version"] == locked
    assert alias["dependencies"] == [f"tensorflow-cpu=={locked}"]


def test_the_build_context_holds_what_the_dockerfile_copies():
    """.dockerignore is an allowlist: each COPY source from the context must be let through."""
    allowed = [
        line[1:].rstrip("/") for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    ]
    sources = [m.group(1) for m in re.finditer(r"^COPY (?!--from)(\S+) ", DOCKERFILE, re.MULTILINE)]
    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert any(source == a or source.startswith(a + "/") for a in allowed), source
    assert (REPO_ROOT / ".dockerignore").read_text().splitlines()[1] == "*"  # everything else stays out
