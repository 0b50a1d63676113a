"""deploy/k8s/ validated offline: against the Kubernetes OpenAPI schemas bundled in kubernetes-validate
(strict: unknown fields are errors), and for the references schemas cannot see (selectors, port names,
claim names, grace periods, the image and user the Dockerfile builds)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy" / "k8s"
# The oldest release with GA gRPC probes, and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
# Custom resources: no schema in the bundle (checked by references below).
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


MANIFEST_FILES = sorted(K8S.rglob("*.yaml"))
BASE = [d for f in sorted(K8S.glob("*.yaml")) for d in documents(f)]


def resource(kind: str, name: str, docs: list[dict] = BASE) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def container(pod_spec: dict, name: str) -> dict:
    return next(c for c in pod_spec["containers"] if c["name"] == name)


def env_value(c: dict, name: str) -> str:
    return next(e["value"] for e in c["env"] if e["name"] == name)


def test_there_are_manifests_to_check():
    kinds = {d["kind"] for f in MANIFEST_FILES for d in documents(f)}
    assert {
        "PersistentVolumeClaim",
        "Job",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
    } <= kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_matches_the_kubernetes_schema(path, version):
    for doc in documents(path):
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError


def test_the_validator_rejects_what_kubernetes_would():
    """The schema check can fail: a misspelt field and a wrong type are caught."""
    deployment = copy.deepcopy(resource("Deployment", "mnist-server"))
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    deployment = copy.deepcopy(resource("Deployment", "mnist-server"))
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8500"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_selectors_pick_the_server_pods():
    deployment = resource("Deployment", "mnist-server")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert matches(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    for service in [d for d in BASE if d["kind"] == "Service"]:
        assert matches(service["spec"]["selector"], pod_labels), service["metadata"]["name"]
    assert matches(resource("PodDisruptionBudget", "mnist-server")["spec"]["selector"]["matchLabels"], pod_labels)
    target = resource("HorizontalPodAutoscaler", "mnist-server")["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "mnist-server")


def test_services_and_probes_use_ports_the_container_declares():
    pod = resource("Deployment", "mnist-server")["spec"]["template"]["spec"]
    server = container(pod, "server")
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}
    for service in [d for d in BASE if d["kind"] == "Service"]:
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["grpc"]["port"] == ports["grpc"], probe


def test_the_service_monitor_scrapes_the_metrics_port():
    monitor = documents(K8S / "monitoring" / "servicemonitor.yaml")[0]
    scraped = [
        s
        for s in BASE
        if s["kind"] == "Service" and matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert scraped, "the ServiceMonitor selects no Service"
    endpoint_ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert endpoint_ports == {"http"}
    assert any(p["name"] == "http" for s in scraped for p in s["spec"]["ports"])
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_the_trainer_writes_and_the_servers_read_the_same_claim():
    claim = resource("PersistentVolumeClaim", "mnist-models")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # replicas on several nodes
    job_pod = resource("Job", "mnist-trainer")["spec"]["template"]["spec"]
    server_pod = resource("Deployment", "mnist-server")["spec"]["template"]["spec"]

    def claim_volume(pod):
        return next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)

    assert claim_volume(job_pod)["persistentVolumeClaim"]["claimName"] == "mnist-models"
    assert claim_volume(server_pod)["persistentVolumeClaim"] == {"claimName": "mnist-models", "readOnly": True}
    # MNIST, then Fashion-MNIST (an init container runs to completion before the next container)
    trainer = next(c for c in job_pod["initContainers"] if c["name"] == "trainer")
    fashion = container(job_pod, "trainer-fashion")
    for job, base in ((trainer, "/models/mnist"), (fashion, "/models/fashion-mnist")):
        assert job["command"] == ["mnist-trainer"]
        assert job["args"][job["args"].index("--model-dir") + 1] == base
        assert "--skip-if-exists" in job["args"]
    assert fashion["args"][fashion["args"].index("--dataset") + 1] == "fashion-mnist"
    server = container(server_pod, "server")
    assert env_value(server, "MNIST_SERVER_MODEL_DIR") == "/models/mnist"
    assert env_value(server, "MNIST_SERVER_MODEL") == "fashion-mnist=/models/fashion-mnist"
    wait = " ".join(server_pod["initContainers"][0]["command"])
    assert "/models/mnist/*/saved_model.pb" in wait and "/models/fashion-mnist/*/saved_model.pb" in wait
    assert all(m.get("readOnly") for m in server["volumeMounts"] if m["name"] == "models")


def test_termination_leaves_time_for_endpoint_removal_and_the_drain():
    pod = resource("Deployment", "mnist-server")["spec"]["template"]["spec"]
    server = container(pod, "server")
    pre_stop = server["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(env_value(server, "MNIST_SERVER_GRACE_PERIOD"))
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + drain
    rolling = resource("Deployment", "mnist-server")["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0  # a rollout never lowers capacity


def test_pods_run_as_the_images_non_root_user_with_the_image_compose_builds():
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    uid = int(re.search(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE).group(1))
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    image = compose["services"]["server"]["image"]
    for kind, name in (("Job", "mnist-trainer"), ("Deployment", "mnist-server")):
        pod = resource(kind, name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["securityContext"]["fsGroup"] == uid  # the volume is writable for the trainer
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert c["image"] == image, c["name"]
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_gpu_deployment_differs_only_where_it_must():
    gpu = documents(K8S / "gpu" / "server-deployment-gpu.yaml")[0]
    cpu = resource("Deployment", "mnist-server")
    gpu_pod = gpu["spec"]["template"]["spec"]
    server = container(gpu_pod, "server")
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert env_value(server, "MNIST_SERVER_DEVICE") == "gpu"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu_pod["tolerations"]
    assert all(c["image"].endswith("-gpu") for c in gpu_pod["initContainers"] + gpu_pod["containers"])

    # Undo exactly those differences: what is left must be the CPU Deployment.
    undone = copy.deepcopy(gpu)
    del undone["metadata"]["labels"]["app.kubernetes.io/variant"]
    pod = undone["spec"]["template"]["spec"]
    del pod["tolerations"]
    for c in pod["initContainers"] + pod["containers"]:
        c["image"] = c["image"].removesuffix("-gpu")
    s = container(pod, "server")
    del s["resources"]["limits"]["nvidia.com/gpu"]
    s["env"] = [e for e in s["env"] if e["name"] != "MNIST_SERVER_DEVICE"]
    assert undone == cpu
