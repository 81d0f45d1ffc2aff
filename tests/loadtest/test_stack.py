"""The local stack (`python -m loadtest.stack`): against a real Prometheus, two replicas serving a
published tiny FIT and an event consumer, scraped every second with the compose config's targets
swapped, so that Prometheus's HTTP API holds the requests each replica answered and the alert
rules of docker/prometheus/alerts.yml; with nothing published and no Redis, a redis-server of
its own and the offline job (on a tiny world); and why Prometheus is skipped where it cannot
run."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import yaml

from loadtest.settings import StackSettings
from loadtest.stack import (
    ALERT_RULES,
    PrometheusUnavailableError,
    Stack,
    find_or_install_prometheus,
)
from offline_jobs.data.dataset import InteractionData
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_store import active_version
from research.service_process import free_port
from tests.conftest import (
    REDIS_URL,
    SERVICE_TEST_ENV,
    TINY_MODEL,
    TINY_TRAIN,
    TINY_WORLD,
    Bundle,
    delete_prefix,
    publish_test_bundle,
    wait_for,
)

REQUESTS_PER_REPLICA = 20
CANDIDATES = 50
SCRAPE_INTERVAL_SECONDS = 1.0
PROMETHEUS_WAIT_SECONDS = 30.0  # a few scrape intervals, with room for a slow machine
POLL_SECONDS = 0.5
READY_TIMEOUT_SECONDS = 60.0
COUNT_QUERY = "sum by (instance) (prerank_request_seconds_count)"


@pytest.fixture
def prometheus_installed(tmp_path: Path) -> None:
    try:
        find_or_install_prometheus(StackSettings(), tmp_path / "install")
    except PrometheusUnavailableError as exc:
        pytest.skip(f"Prometheus unavailable: {exc}")


@pytest.fixture
def published(
    redis_client: redis.Redis, fit_bundle: Bundle, tiny_data: InteractionData
) -> Iterator[RedisKeys]:
    """The tiny FIT and its users' features under a key prefix of this test's own."""
    keys = RedisKeys(f"stack-test-{uuid.uuid4().hex[:8]}:")
    publish_test_bundle(redis_client, keys, fit_bundle.path, users=tiny_data)
    yield keys
    delete_prefix(redis_client, keys.prefix)


def query(prometheus_url: str, promql: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    return response.json()["data"]["result"]


def test_prometheus_scrapes_the_requests_of_both_replicas(
    prometheus_installed: None,
    published: RedisKeys,
    fit_bundle: Bundle,
    tiny_data: InteractionData,
    tmp_path: Path,
) -> None:
    settings = StackSettings(
        redis_url=REDIS_URL,
        redis_key_prefix=published.prefix,
        stack_service_ports=(free_port(), free_port()),
        stack_prometheus_port=free_port(),
        stack_events_metrics_port=free_port(),
        stack_scrape_interval_seconds=SCRAPE_INTERVAL_SECONDS,
        stack_state_dir=tmp_path / "stack",
        stack_ready_timeout_seconds=READY_TIMEOUT_SECONDS,
    )
    candidates = tiny_data.catalogue[:CANDIDATES].tolist()
    body = {"user_id": int(tiny_data.user_ids[0]), "candidates": candidates}
    started = time.monotonic()
    with Stack(settings, extra_env=SERVICE_TEST_ENV) as stack:
        up_seconds = time.monotonic() - started
        assert stack.prometheus_url is not None, stack.prometheus_skipped
        for url in stack.replica_urls:
            ready = httpx.get(f"{url}/readyz", timeout=5).json()
            assert ready["version"] == fit_bundle.manifest.version  # published, not retrained
            with httpx.Client(base_url=url, timeout=30) as client:
                statuses = [
                    client.post("/prerank", json=body).status_code
                    for _ in range(REQUESTS_PER_REPLICA)
                ]
            assert statuses == [200] * REQUESTS_PER_REPLICA

        instances = {f"{host}:{port}" for host, port in stack.replica_addresses}
        deadline = time.monotonic() + PROMETHEUS_WAIT_SECONDS
        counts: dict[str, float] = {}
        while time.monotonic() < deadline:
            counts = {
                row["metric"]["instance"]: float(row["value"][1])
                for row in query(stack.prometheus_url, COUNT_QUERY)
            }
            if set(counts) == instances and min(counts.values()) >= REQUESTS_PER_REPLICA:
                break
            time.sleep(POLL_SECONDS)
        seen_seconds = time.monotonic() - started - up_seconds
        print(f"stack up in {up_seconds:.1f} s; Prometheus saw {counts} after {seen_seconds:.1f} s")
        assert counts == dict.fromkeys(instances, float(REQUESTS_PER_REPLICA))

        up = query(stack.prometheus_url, 'up{job="prerank"}')
        assert {row["metric"]["instance"]: row["value"][1] for row in up} == dict.fromkeys(
            instances, "1"
        )
        wait_for(
            lambda: query(stack.prometheus_url, 'up{job="prerank-events"} == 1'),
            "Prometheus to scrape the event consumer",
        )
        rules = httpx.get(f"{stack.prometheus_url}/api/v1/rules", timeout=5).json()
        loaded = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
        expected = yaml.safe_load(ALERT_RULES.read_text())
        assert loaded == {r["alert"] for g in expected["groups"] for r in g["rules"]}
        children = list(stack.children)
    assert [child.name for child in children if child.running()] == []


def test_without_redis_or_a_version_the_stack_starts_redis_and_runs_the_offline_job(
    tmp_path: Path,
) -> None:
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    settings = StackSettings(
        redis_url=redis_url,
        stack_service_ports=(free_port(),),
        stack_prometheus_port=free_port(),
        stack_events_metrics_port=free_port(),
        stack_install_prometheus=False,
        stack_state_dir=tmp_path / "stack",
        stack_ready_timeout_seconds=READY_TIMEOUT_SECONDS,
    )
    tiny_job = {  # the offline job of the test suite's tiny world, FIT only
        "PRERANK_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "PRERANK_MODELS": '["fit"]',
        "PRERANK_SYNTHETIC": TINY_WORLD.model_dump_json(),
        "PRERANK_MODEL": TINY_MODEL.model_dump_json(),
        "PRERANK_TRAIN": TINY_TRAIN.model_dump_json(),
        "PRERANK_PARITY_USERS": "16",
        **SERVICE_TEST_ENV,
    }
    with Stack(settings, extra_env=tiny_job) as stack:
        assert stack.children[0].name == "redis"  # started here: nothing answered
        client = redis.Redis.from_url(redis_url)
        active = active_version(client, settings.keys)
        client.close()
        assert active is not None  # the offline job published
        ready = httpx.get(f"{stack.replica_urls[0]}/readyz", timeout=5).json()
        assert ready["version"] == active
        assert (tmp_path / "artifacts" / "bundles" / active).is_dir()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()


def test_prometheus_is_skipped_with_the_reason_when_it_cannot_be_had(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither prometheus nor apt-get on it
    with pytest.raises(PrometheusUnavailableError, match="no apt-get"):
        find_or_install_prometheus(StackSettings(), tmp_path)
    refused = StackSettings(stack_install_prometheus=False)
    with pytest.raises(PrometheusUnavailableError, match="STACK_INSTALL_PROMETHEUS=false"):
        find_or_install_prometheus(refused, tmp_path)
