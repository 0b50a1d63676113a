"""The real docker-compose.yml, built and run in containers, checked from outside like a user would.

Needs root (it runs its own dockerd), Debian's mirror and PyPI (both reachable from CI), and the
genuine MNIST files in $MNIST_DATA_DIR. See tests/e2e/conftest.py for the steps and their timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.e2e.stack import prometheus_get

pytestmark = [pytest.mark.e2e, pytest.mark.real_mnist, pytest.mark.timeout(3600)]

MIN_ACCURACY = 0.95
MIN_FASHION_ACCURACY = 0.75  # 300 steps (0.7 epoch) of Fashion-MNIST
# The request counter, for calls our own client made (the healthcheck's calls count too, elsewhere).
CLASSIFY_CALLS = 'sum(mnist_serving_requests_total{method="mnist_serving.v1.Classifier/Classify", code="OK"})'


def mnist_client(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The client CLI from this checkout, on the host: outside the containers, as users call it."""
    return subprocess.run(
        [sys.executable, "-m", "mnist_client.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("service", ["trainer", "trainer-fashion"])
def test_trainers_exited_zero(compose_stack, service):
    state = compose_stack.container(service)["State"]
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 0, compose_stack.logs()


def test_server_is_healthy(compose_stack):
    state = compose_stack.container("server")["State"]
    assert state["Health"]["Status"] == "healthy", compose_stack.logs()
    for port in (compose_stack.ports.server, compose_stack.ports.lb):  # direct, and through nginx
        result = mnist_client("--target", f"127.0.0.1:{port}", "health")
        assert result.returncode == 0, (port, result.stdout, result.stderr)
        assert result.stdout.strip() == "SERVING"


def test_classify_real_test_images_through_the_load_balancer(compose_stack, mnist_dir, e2e_fact):
    result = mnist_client(
        "--target",
        f"127.0.0.1:{compose_stack.ports.lb}",
        "classify",
        "--idx",
        str(mnist_dir / "t10k-images-idx3-ubyte.gz"),
        "--labels",
        str(mnist_dir / "t10k-labels-idx1-ubyte.gz"),
        "--count",
        "1000",
        "--json",
    )
    assert result.returncode == 0, (result.stderr, compose_stack.logs())
    summary = json.loads(result.stdout)
    assert summary["images"] == 1000
    e2e_fact(f"accuracy through nginx on the first 1000 test images: {summary['accuracy']:.1%}")
    assert summary["accuracy"] >= MIN_ACCURACY, summary["accuracy"]


def test_fashion_mnist_is_served_beside_mnist_through_the_load_balancer(compose_stack, fashion_mnist_dir, e2e_fact):
    result = mnist_client(
        "--target",
        f"127.0.0.1:{compose_stack.ports.lb}",
        "--model",
        "fashion-mnist",
        "classify",
        "--idx",
        str(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz"),
        "--labels",
        str(fashion_mnist_dir / "t10k-labels-idx1-ubyte.gz"),
        "--count",
        "1000",
        "--json",
    )
    assert result.returncode == 0, (result.stderr, compose_stack.logs())
    summary = json.loads(result.stdout)
    e2e_fact(f"fashion-mnist accuracy through nginx on the first 1000 test images: {summary['accuracy']:.1%}")
    assert summary["accuracy"] >= MIN_FASHION_ACCURACY, summary["accuracy"]


def test_prometheus_scrapes_the_server(compose_stack, mnist_dir):
    port = compose_stack.ports.prometheus
    # Calls of its own, so this test does not depend on the others having run.
    result = mnist_client(
        "--target",
        f"127.0.0.1:{compose_stack.ports.lb}",
        "classify",
        "--idx",
        str(mnist_dir / "t10k-images-idx3-ubyte.gz"),
        "--count",
        "10",
    )
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 90  # a few scrape intervals (5 s in CI)
    while True:
        targets = prometheus_get(port, "/api/v1/targets")["activeTargets"]
        server = [t for t in targets if t["labels"]["job"] == "mnist-server"]
        samples = prometheus_get(port, "/api/v1/query", query=CLASSIFY_CALLS)["result"]
        total = float(samples[0]["value"][1]) if samples else 0.0
        if (server and server[0]["health"] == "up" and total > 0) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert len(server) == 1, targets
    assert server[0]["health"] == "up", server[0]
    assert total > 0, samples
    versions = prometheus_get(port, "/api/v1/query", query="mnist_serving_model_version")["result"]
    assert {v["metric"]["model"] for v in versions} == {"mnist", "fashion-mnist"}, versions  # both, by label
    rules = prometheus_get(port, "/api/v1/rules")["groups"]
    assert {g["name"] for g in rules} == {"mnist-serving.rules", "mnist-serving.alerts"}


def test_rest_and_the_page_through_the_load_balancer(compose_stack, mnist_dir):
    """The HTTP side of the stack: TF Serving REST predict on real test digits through nginx's HTTP
    port, answered like gRPC; the page is served from the container image's package data."""
    import urllib.request

    from mnist_serving.idx import read_idx

    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz", count=100)
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz", count=100)
    base = f"http://127.0.0.1:{compose_stack.ports.lb_http}"
    request = urllib.request.Request(
        base + "/v1/models/mnist:predict",
        data=json.dumps({"instances": images.tolist()}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        predictions = json.loads(response.read())["predictions"]
    accuracy = sum(p["classes"] == int(label) for p, label in zip(predictions, labels)) / len(labels)
    assert accuracy >= MIN_ACCURACY, (accuracy, compose_stack.logs())
    with urllib.request.urlopen(base + "/", timeout=30) as response:
        page = response.read().decode()
        assert "Content-Security-Policy" in response.headers
    assert "<canvas" in page
