"""Publish, serve and hot-swap on a real 3-primary Redis Cluster the suite starts itself: the
version's chunks spread over every primary, the service follows the cluster's `active` pointer
and reads user features from it, and a publish under load switches versions with no failed or
mixed answer. A service started while the cluster is down serves its local bundle and follows
the cluster once it is up."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from offline_jobs.release.publish import publish_bundle
from offline_jobs.release.versions import rollback
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_client import LazyClusterClient
from prerank_contract.redis_store import active_version, read_version
from prerank_contract.settings import CommonSettings
from research.service_process import ServiceProcess
from tests.conftest import (
    ORPHAN_MIN_IDLE_SECONDS,
    TEST_GATE,
    PrivateCluster,
    clone_bundle,
    publish_test_bundle,
    start_service,
)

POLL_SECONDS = 0.2
SWAP_TIMEOUT = 30.0
LOAD_THREADS = 2
CANDIDATES = 60


def cluster_env(cluster: PrivateCluster, keys: RedisKeys) -> dict[str, str]:
    return {
        "PRERANK_REDIS_URL": cluster.url,
        "PRERANK_REDIS_CLUSTER": "true",
        "PRERANK_REDIS_KEY_PREFIX": keys.prefix,
        "PRERANK_POLL_INTERVAL_SECONDS": str(POLL_SECONDS),
    }


@pytest.fixture
def keys() -> RedisKeys:
    return RedisKeys(f"cluster-{uuid.uuid4().hex[:8]}:")


@pytest.fixture
def client(redis_cluster: PrivateCluster, keys: RedisKeys) -> Iterator[LazyClusterClient]:
    """A cluster client as the jobs and the service build it; this test's keys removed after."""
    settings = CommonSettings(redis_url=redis_cluster.url, redis_cluster=True)
    cluster_client = settings.connect_redis()
    assert isinstance(cluster_client, LazyClusterClient)
    yield cluster_client
    written = list(cluster_client.scan_iter(match=f"{keys.prefix}*", count=1000))
    if written:
        cluster_client.delete(*written)  # redis-py splits a multi-key DELETE by slot
    cluster_client.close()


def wait_version(service: ServiceProcess, version: str) -> None:
    deadline = time.monotonic() + SWAP_TIMEOUT
    while time.monotonic() < deadline:
        if httpx.get(f"{service.url}/readyz", timeout=10).json().get("version") == version:
            return
        time.sleep(POLL_SECONDS / 2)
    raise AssertionError(f"service never served {version}:\n{service.log()}")


def test_a_published_version_spreads_over_every_primary_and_reads_back(
    redis_cluster, client, keys, fit_bundle, tmp_path: Path
) -> None:
    bundle = clone_bundle(fit_bundle.path, tmp_path, "v1")
    result = publish_test_bundle(client, keys, bundle, chunk_bytes=1024)
    assert result.action == "published"
    assert active_version(client, keys) == "v1"
    manifest, files = read_version(client, keys, "v1")
    assert set(files) == set(manifest.files)
    assert all(files[name] == (bundle / name).read_bytes() for name in files)
    per_node = Counter()
    for port, node in zip(redis_cluster.ports, redis_cluster.node_clients(), strict=True):
        per_node[port] = sum(1 for _ in node.scan_iter(match=keys.version_pattern("v1")))
        node.close()
    assert len(per_node) == len(redis_cluster.ports)
    assert all(count > 0 for count in per_node.values()), per_node  # no node holds it all
    assert sum(per_node.values()) == sum(1 for _ in client.scan_iter(match=f"{keys.prefix}v:*"))


def test_retention_and_rollback_on_the_cluster(client, keys, fit_bundle, tmp_path: Path) -> None:
    for version in ("v1", "v2", "v3"):
        publish_bundle(
            client,
            keys,
            clone_bundle(fit_bundle.path, tmp_path, version),
            chunk_bytes=4096,
            keep_versions=2,
            gate=TEST_GATE,
            orphan_min_idle_seconds=ORPHAN_MIN_IDLE_SECONDS,
            progress=False,
        )
    assert active_version(client, keys) == "v3"
    # v1, beyond the retention, is gone from every node (SCAN and DELETE span the cluster)
    assert not list(client.scan_iter(match=keys.version_pattern("v1")))
    assert rollback(client, keys) == ("v3", "v2")
    assert active_version(client, keys) == "v2"


def test_serve_and_hot_swap_under_load_on_the_cluster(
    redis_cluster, client, keys, fit_bundle, tiny_data, tmp_path: Path
) -> None:
    first = clone_bundle(fit_bundle.path, tmp_path, "v1")
    second = clone_bundle(fit_bundle.path, tmp_path, "v2", heads_scale=1.5)
    publish_test_bundle(client, keys, first, users=tiny_data)
    service = start_service(cluster_env(redis_cluster, keys), tmp_path / "service.log")
    user_id = int(tiny_data.user_ids[0])
    body = {"user_id": user_id, "candidates": tiny_data.catalogue[:CANDIDATES].tolist()}
    answers: list[tuple[int, dict]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                response = http.post(f"{service.url}/prerank", json=body)
                answers.append((response.status_code, response.json()))

    threads = [threading.Thread(target=load) for _ in range(LOAD_THREADS)]
    try:
        wait_version(service, "v1")
        before = httpx.post(f"{service.url}/prerank", json=body, timeout=30).json()
        for thread in threads:
            thread.start()
        publish_test_bundle(client, keys, second)
        wait_version(service, "v2")
        time.sleep(POLL_SECONDS)  # a few answers of v2 under load
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        service.stop()
    # user features came from the cluster: the full model, not a degraded answer
    assert before["user_source"] == "feature_store" and not before["degraded"], before
    assert before["model_version"] == "v1" and len(before["items"]) == CANDIDATES
    assert answers and all(status == 200 for status, _ in answers), service.log()
    versions = [answer["model_version"] for _, answer in answers]
    assert {"v1", "v2"} <= set(versions), Counter(versions)
    assert versions == sorted(versions), "an answer of v1 came after one of v2"
    by_version = {answer["model_version"]: answer["items"] for _, answer in answers}
    assert by_version["v1"] == before["items"]  # each answer scored wholly by one version
    assert by_version["v2"] != by_version["v1"]
    assert all(not answer["degraded"] for _, answer in answers)


def test_a_service_started_while_the_cluster_is_down_follows_it_once_up(
    tmp_path: Path, fit_bundle, tiny_data, keys
) -> None:
    cluster = PrivateCluster(tmp_path / "late-cluster")
    env = cluster_env(cluster, keys) | {"PRERANK_BUNDLE_DIR": str(fit_bundle.path)}
    service = start_service(env, tmp_path / "service.log")
    try:
        ready = httpx.get(f"{service.url}/readyz", timeout=10).json()
        assert ready["version"] == fit_bundle.manifest.version  # the local bundle serves
        assert "not reachable" in str(ready), ready
        cluster.start()
        cluster_client = CommonSettings(redis_url=cluster.url, redis_cluster=True).redis_client()
        publish_test_bundle(
            cluster_client, keys, clone_bundle(fit_bundle.path, tmp_path, "late"), users=tiny_data
        )
        wait_version(service, "late")
        cluster_client.close()
    finally:
        service.stop()
        cluster.stop()


def test_a_cluster_url_naming_another_database_is_refused() -> None:
    with pytest.raises(ValueError, match="redis_url: a Redis Cluster has database 0 only"):
        CommonSettings(redis_url="redis://127.0.0.1:7000/3", redis_cluster=True)
