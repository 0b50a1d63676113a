"""deploy/prometheus/ checked with Debian's promtool (config, rule syntax, alert unit tests) and against the
metrics the server really defines."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.e2e.stack import Ports, write_prometheus_config
from tests.unit.deploy_helpers import METRIC, PROMETHEUS, REPO_ROOT, promtool, server_metric_names


def test_config_is_valid():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_are_valid():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_on_the_data_they_are_for():
    """alerts.test.yml: each alert fires on its data and stays quiet on data it must ignore."""
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails_the_alert_tests(tmp_path):
    """The alert tests can fail: the same tests with one expected value changed do."""
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path)
    text = (PROMETHEUS / "alerts.test.yml").read_text()
    assert "6.25%" in text
    (tmp_path / "alerts.test.yml").write_text(text.replace("6.25%", "7.25%"))
    result = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert result.returncode != 0


def test_rules_use_only_metrics_the_server_exposes():
    used = set(METRIC.findall((PROMETHEUS / "alerts.yml").read_text()))
    assert used, "no mnist_serving_ metric in alerts.yml"
    assert used <= server_metric_names(), used - server_metric_names()


def test_the_server_job_discovers_every_compose_replica():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "mnist-server")
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert job["dns_sd_configs"] == [{"names": ["server"], "type": "A", "port": 8501, "refresh_interval": "15s"}]
    assert "server" in compose["services"]
    assert compose["services"]["prometheus"]["volumes"][0] == "./deploy/prometheus:/etc/prometheus:ro"


def test_the_ci_rewrite_changes_only_discovery_and_intervals(tmp_path):
    ports = Ports(server=1, server_http=2, lb=3, prometheus=4, lb_http=5)
    rewritten = write_prometheus_config(tmp_path, ports)
    result = promtool("check", "config", "prometheus.yml", cwd=rewritten)
    assert result.returncode == 0, result.stdout + result.stderr
    original = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    ci = yaml.safe_load((rewritten / "prometheus.yml").read_text())
    assert ci["rule_files"] == original["rule_files"]
    assert (rewritten / "alerts.yml").read_text() == (PROMETHEUS / "alerts.yml").read_text()
    targets = {j["job_name"]: j["static_configs"] for j in ci["scrape_configs"]}
    assert targets == {"mnist-server": [{"targets": ["127.0.0.1:2"]}], "prometheus": [{"targets": ["127.0.0.1:4"]}]}


@pytest.mark.parametrize("bad", ['up{job="mnist-server"} ==', "rate(mnist_serving_requests_total[5m]"])
def test_promtool_rejects_broken_rules(tmp_path, bad):
    (tmp_path / "rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "x", "expr": bad}]}]})
    )
    assert promtool("check", "rules", "rules.yml", cwd=tmp_path).returncode != 0
