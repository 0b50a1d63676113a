"""deploy/grafana/ checked statically (Grafana has no Debian package, so the CI stage does not run it):
provisioning paths match the compose mounts, every panel uses the provisioned datasource, every query
is valid PromQL (promtool parses it) over metrics the server really exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.unit.deploy_helpers import METRIC, REPO_ROOT, promtool, server_metric_names

GRAFANA = REPO_ROOT / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "mnist-serving.json").read_text())
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
PROVIDERS = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mnist-serving.yml").read_text())
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
# Grafana's own variables, replaced by what they expand to before promtool parses a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$instance": ".*"}


def targets() -> list[dict]:
    return [t for p in DASHBOARD["panels"] for t in p["targets"]]


def mounts(service: str) -> dict[str, str]:
    """container path -> host path of a compose service's bind mounts."""
    pairs = [v.split(":")[:2] for v in COMPOSE["services"][service]["volumes"]]
    return {container: host for host, container in pairs}


def test_provisioning_and_dashboards_are_mounted_where_grafana_looks():
    grafana_mounts = mounts("grafana")
    assert grafana_mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    dashboards_path = PROVIDERS["providers"][0]["options"]["path"]
    assert grafana_mounts[dashboards_path] == "./deploy/grafana/dashboards"
    home = COMPOSE["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_path}/mnist-serving.json"


def test_grafana_is_kept_out_of_the_default_and_ci_runs():
    assert COMPOSE["services"]["grafana"]["profiles"] == ["grafana"]


def test_the_datasource_is_the_compose_prometheus():
    (source,) = DATASOURCES["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in COMPOSE["services"]
    used = {json.dumps(p["datasource"], sort_keys=True) for p in DASHBOARD["panels"]}
    used |= {json.dumps(t["datasource"], sort_keys=True) for t in targets()}
    assert used == {json.dumps({"type": "prometheus", "uid": source["uid"]}, sort_keys=True)}


def test_panels_cover_what_operators_watch():
    queries = " ".join(t["expr"] for t in targets())
    for metric in (
        "mnist_serving_requests_total",
        "mnist_serving_request_latency_seconds_bucket",
        "mnist_serving_batch_size",
        "mnist_serving_queue_depth",
        "mnist_serving_model_version",
    ):
        assert metric in queries, metric
    assert 'code!="OK"' in queries  # errors
    assert {"0.5", "0.9", "0.99"} <= set(re.findall(r"histogram_quantile\(([\d.]+)", queries))


def test_panel_ids_are_unique_and_the_layout_does_not_overlap():
    assert len({p["id"] for p in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])
    cells = set()
    for p in DASHBOARD["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, p["title"]
        cells |= area


def test_queries_use_only_metrics_the_server_exposes():
    used = {m for t in targets() for m in METRIC.findall(t["expr"])}
    assert used <= server_metric_names(), used - server_metric_names()


def expand(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def check_queries_with_promtool(exprs: list[str], tmp_path: Path):
    rules = [{"record": f"dashboard:query{i}", "expr": expand(e)} for i, e in enumerate(exprs)]
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return promtool("check", "rules", "queries.yml", cwd=tmp_path)


def test_every_query_is_valid_promql(tmp_path):
    result = check_queries_with_promtool([t["expr"] for t in targets()], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "broken",
    ["sum(rate(mnist_serving_requests_total[$__rate_interval])", 'mnist_serving_queue_depth{instance=~"$instance"'],
)
def test_a_broken_query_is_caught(tmp_path, broken):
    assert check_queries_with_promtool([broken], tmp_path).returncode != 0
