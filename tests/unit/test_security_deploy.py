"""What the shipped container setup promises, read from the real files (no Docker needed):
the image runs as a non-root numeric user, the server mounts the model volume read-only, and
no secret can be baked into the image. (tests/e2e runs the same files for real.)"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAMES = re.compile(r"token|secret|passw|api[_-]?key|private", re.IGNORECASE)
SECRET_FILES = re.compile(r"\.(pem|key|crt|p12|pfx)\b|id_rsa|\.netrc|\.pypirc|tokens?\b", re.IGNORECASE)


def runtime_stage(dockerfile: str) -> list[str]:
    """The instructions of the last stage (the image that ships), one per logical line."""
    lines = dockerfile.replace("\\\n", " ").splitlines()
    stages = [i for i, line in enumerate(lines) if line.strip().upper().startswith("FROM ")]
    return [line.strip() for line in lines[stages[-1] :] if line.strip() and not line.strip().startswith("#")]


def test_the_image_runs_as_a_non_root_numeric_user():
    stage = runtime_stage((ROOT / "deploy" / "Dockerfile").read_text())
    users = [line.split(None, 1)[1] for line in stage if line.upper().startswith("USER ")]
    assert users, "the runtime stage never leaves root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, f"USER {users[-1]}: numeric (Kubernetes runAsNonRoot checks it) and not 0"


def test_the_server_mounts_the_model_volume_read_only():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["server"]["volumes"]
    models = [m for m in mounts if str(m).split(":")[1:2] == ["/models"]]
    assert models and all(str(m).endswith(":ro") for m in models), mounts


def test_nothing_secret_is_copied_or_set_in_the_image():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for line in dockerfile.replace("\\\n", " ").splitlines():
        words = line.strip().split()
        if words and words[0].upper() in ("ENV", "ARG"):
            assert not SECRET_NAMES.search(" ".join(words[1:])), f"a secret-looking setting in the image: {line}"
        if words and words[0].upper() in ("COPY", "ADD"):
            assert not SECRET_FILES.search(" ".join(words[1:])), f"a secret-looking file copied in: {line}"
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "the build context must be an allowlist, so stray keys and tokens never reach it"
    assert not any(SECRET_FILES.search(line) for line in ignore if line.startswith("!")), ignore
