"""Prometheus and Grafana of the stack: every series the alerts and the dashboard read is one the
service exports, promtool accepts the config and the rules, and the rules' unit tests
(docker/prometheus/alerts_test.yml) fire exactly the alerts they expect."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.settings import StackSettings
from loadtest.stack import PrometheusUnavailableError, find_or_install_prometheus
from offline_jobs.events.metrics import EventMetrics
from service.metrics import Metrics
from tests.conftest import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "docker" / "prometheus"
GRAFANA_DIR = REPO_ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "prerank.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
# The series prometheus_client exposes per metric family type.
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}
METRIC_NAME = re.compile(r"\bprerank_[a-z0-9_]+\b")
PROMTOOL_TIMEOUT_SECONDS = 60


def exported_series() -> set[str]:
    """Series names fresh registries of the service and of the event consumer expose (labelled
    metrics have no samples yet)."""
    return {
        family.name + suffix
        for registry in (Metrics().registry, EventMetrics().registry)
        for family in registry.collect()
        for suffix in SERIES_SUFFIXES[family.type]
    }


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return {
        rule.get("alert") or rule["record"]: rule["expr"]
        for group in rules["groups"]
        for rule in group["rules"]
    }


def dashboard_expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr":
                yield value
            else:
                yield from dashboard_expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_expressions(item)


def unknown_metrics(expressions: list[str]) -> set[str]:
    used = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert used, "no prerank_* metric read at all"
    return used - exported_series()


def test_alerts_read_only_series_the_service_exports() -> None:
    assert unknown_metrics(list(alert_expressions().values())) == set()


def test_dashboard_reads_only_series_the_service_exports() -> None:
    expressions = list(dashboard_expressions(json.loads(DASHBOARD.read_text())))
    assert unknown_metrics(expressions) == set()


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    (datasource,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {
        source["uid"]
        for panel in dashboard["panels"]
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
    }
    assert uids == {datasource["uid"]}
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def test_grafana_loads_dashboards_from_where_compose_mounts_them() -> None:
    (provider,) = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    mounts = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["grafana"]["volumes"]
    targets = {m.split(":")[0]: m.split(":")[1] for m in mounts}
    assert targets["./docker/grafana/dashboards"] == provider["options"]["path"]
    assert targets["./docker/grafana/provisioning"] == "/etc/grafana/provisioning"


@pytest.fixture(scope="module")
def promtool(tmp_path_factory: pytest.TempPathFactory) -> str:
    """promtool, from Debian's prometheus package (installed when missing and possible)."""
    log_dir = tmp_path_factory.mktemp("prometheus-install")
    try:
        find_or_install_prometheus(StackSettings(), log_dir)
    except PrometheusUnavailableError as exc:
        pytest.skip(f"Prometheus unavailable: {exc}")
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("prometheus is installed without promtool")
    return found


def run_promtool(promtool: str, *args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    done = subprocess.run(
        [promtool, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_accepts_the_config_and_the_rules(promtool: str) -> None:
    assert "SUCCESS" in run_promtool(promtool, "check", "config", "prometheus.yml")
    output = run_promtool(promtool, "check", "rules", "alerts.yml")
    assert f"{len(alert_expressions())} rules found" in output


def test_alert_rules_fire_as_their_unit_tests_expect(promtool: str) -> None:
    assert "SUCCESS" in run_promtool(promtool, "test", "rules", "alerts_test.yml")


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert tested == set(alert_expressions())
