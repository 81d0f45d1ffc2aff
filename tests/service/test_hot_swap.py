"""Hot swap against a real uvicorn following the real Redis: a publish under load switches the
version with no failed or mixed response; broken versions are refused while the last good one
keeps serving; the A/B split; explanations; memory after repeated swaps."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from offline_jobs.release.publish import GateRefusedError
from offline_jobs.release.versions import activate, clear_split, set_split
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import ITEM_HEADS_FILE
from prerank_contract.redis_store import read_manifest_of
from prerank_contract.traffic import TrafficSplit, assign_arm
from research.service_process import ServiceProcess
from tests.conftest import (
    clone_bundle,
    publish_test_bundle,
    start_service,
)

POLL_SECONDS = 0.1
SWAP_TIMEOUT = 30.0
LOAD_THREADS = 3


class World:
    """One service on its own key prefix, and the bundles the tests publish to it."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, fit_path: Path, tmp: Path) -> None:
        self.client, self.keys, self.fit_path, self.tmp = client, keys, fit_path, tmp
        self.service: ServiceProcess

    def bundle(self, version: str, scale: float = 1.0, edit: Callable | None = None) -> Path:
        return clone_bundle(self.fit_path, self.tmp, version, heads_scale=scale, edit=edit)

    def publish(self, path: Path, *, activate: bool = True) -> None:
        publish_test_bundle(self.client, self.keys, path, keep_versions=50, activate=activate)

    def ready(self) -> dict:
        return httpx.get(f"{self.service.url}/readyz", timeout=10).json()

    def wait(self, condition: Callable[[dict], bool], what: str) -> dict:
        deadline = time.monotonic() + SWAP_TIMEOUT
        while time.monotonic() < deadline:
            ready = self.ready()
            if condition(ready):
                return ready
            time.sleep(POLL_SECONDS / 2)
        raise AssertionError(f"timed out waiting for {what}: {ready}\n{self.service.log()}")

    def wait_version(self, version: str) -> dict:
        return self.wait(lambda r: r.get("version") == version, f"version {version}")

    def wait_refused(self, version: str) -> dict:
        return self.wait(
            lambda r: any(x["version"] == version for x in r["refused"]), f"{version} refused"
        )

    def rank(self, user_id: int, candidates: list[int], **extra: object) -> dict:
        response = httpx.post(
            f"{self.service.url}/prerank",
            json={"user_id": user_id, "candidates": candidates, **extra},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.service.process.pid}/status").read_text()
        return int(
            next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]
        )


@pytest.fixture(scope="module")
def world(
    redis_client: redis.Redis, fit_bundle, key_prefix: str, tmp_path_factory
) -> Iterator[World]:
    keys = RedisKeys(f"{key_prefix}swap-{uuid.uuid4().hex[:6]}:")
    tmp = tmp_path_factory.mktemp("swap")
    world = World(redis_client, keys, fit_bundle.path, tmp)
    world.publish(world.bundle("v1"))
    world.service = start_service(
        {
            "PRERANK_REDIS_KEY_PREFIX": keys.prefix,
            "PRERANK_POLL_INTERVAL_SECONDS": str(POLL_SECONDS),
            "PRERANK_REFUSED_RETRY_SECONDS": "3600",
            "PRERANK_WARMUP_CANDIDATES": "200",
        },
        tmp / "service.log",
    )
    yield world
    world.service.stop()


@pytest.fixture(scope="module")
def candidates(tiny_data) -> list[int]:
    return tiny_data.catalogue[:120].tolist()


def scored(body: dict) -> list[tuple[int, float]]:
    return [(item["item_id"], item["score"]) for item in body["items"]]


def test_publishing_under_load_switches_with_no_failed_or_mixed_response(
    world: World, candidates: list[int]
) -> None:
    world.wait_version("v1")
    reference = {"v1": scored(world.rank(5, candidates))}
    seen: list[list[tuple[int, str, list]]] = [[] for _ in range(LOAD_THREADS)]
    stop = threading.Event()

    def load(out: list) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    f"{world.service.url}/prerank", json={"user_id": 5, "candidates": candidates}
                )
                body = response.json() if response.status_code == 200 else {}
                out.append((response.status_code, body.get("model_version"), body))

    threads = [threading.Thread(target=load, args=(out,)) for out in seen]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    world.publish(world.bundle("v2", scale=0.5))  # scores differently from v1
    world.wait_version("v2")
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    reference["v2"] = scored(world.rank(5, candidates))
    assert reference["v1"] != reference["v2"]

    responses = [r for out in seen for r in out]
    assert len(responses) >= 20
    assert [r for r in responses if r[0] != 200] == []
    assert {version for _, version, _ in responses} == {"v1", "v2"}
    for _, version, body in responses:  # every response is wholly one version's answer
        assert scored(body) == reference[version]
    for out in seen:  # per client, once v2 answered, v1 never again
        versions = [version for _, version, _ in out]
        assert "v1" not in versions[versions.index("v2") :]


def test_a_version_with_a_bad_checksum_is_refused_and_v2_keeps_serving(
    world: World, candidates: list[int]
) -> None:
    world.wait_version("v2")
    world.publish(world.bundle("v3-checksum", scale=2.0), activate=False)
    chunk = world.keys.file_chunk("v3-checksum", ITEM_HEADS_FILE, 0)
    damaged = bytearray(world.client.get(chunk))
    damaged[-1] ^= 0xFF
    world.client.set(chunk, bytes(damaged))
    world.client.set(world.keys.active, "v3-checksum")  # a pointer moved past the publisher
    ready = world.wait_refused("v3-checksum")
    assert ready["version"] == "v2"
    (refusal,) = [r for r in ready["refused"] if r["version"] == "v3-checksum"]
    assert ITEM_HEADS_FILE in refusal["reason"] and "sha256" in refusal["reason"]
    assert world.rank(5, candidates)["model_version"] == "v2"
    metrics = httpx.get(f"{world.service.url}/metrics").text
    assert 'prerank_model_loads_total{result="refused"}' in metrics


@pytest.mark.parametrize(
    ("version", "edit", "reason"),
    [
        (
            "v3-parity",
            lambda m: m.update(parity={"user_tower": 1e-6, "scorer": 0.2}),
            "parity failed",
        ),
        (
            "v3-auc",
            lambda m: m["metrics"]["splits"]["test"].update(auc=0.45),
            "below the floor",
        ),
    ],
)
def test_a_version_the_gate_refuses_never_serves(
    world: World, candidates: list[int], version: str, edit: Callable, reason: str
) -> None:
    world.client.set(world.keys.active, "v2")
    world.wait_version("v2")
    broken = world.bundle(version, scale=2.0, edit=edit)
    with pytest.raises(GateRefusedError, match=reason):
        world.publish(broken)
    assert world.client.get(world.keys.manifest(version)) is None  # nothing written
    # Even a pointer moved by hand to such a version is refused by the service's own gate:
    sound = world.bundle(f"{version}-forced", scale=2.0)
    world.publish(sound, activate=False)
    forced = (broken / "manifest.json").read_text().replace(version, f"{version}-forced")
    world.client.set(world.keys.manifest(f"{version}-forced"), forced)
    world.client.set(world.keys.active, f"{version}-forced")
    ready = world.wait_refused(f"{version}-forced")
    assert ready["version"] == "v2"
    (refusal,) = [r for r in ready["refused"] if r["version"] == f"{version}-forced"]
    assert reason in refusal["reason"]
    assert world.rank(5, candidates)["model_version"] == "v2"


def test_ab_split_sends_each_user_to_a_stable_arm(world: World, candidates: list[int]) -> None:
    activate(world.client, world.keys, "v2")
    world.wait_version("v2")
    world.publish(world.bundle("v4", scale=1.5), activate=False)
    split = TrafficSplit(version="v4", share=0.4)
    set_split(world.client, world.keys, split)
    ready = world.wait(lambda r: "treatment" in r["arms"], "a treatment arm")
    assert ready["arms"]["treatment"] == {"version": "v4", "model": "fit", "share": 0.4}
    arms = {}
    for user in range(60):
        body = world.rank(user, candidates[:10])
        assert body["arm"] == assign_arm(user, split)
        assert body["model_version"] == {"control": "v2", "treatment": "v4"}[body["arm"]]
        arms[user] = body["arm"]
    assert set(arms.values()) == {"control", "treatment"}
    assert all(world.rank(u, candidates[:10])["arm"] == arms[u] for u in range(20))
    metrics = httpx.get(f"{world.service.url}/metrics").text
    for arm, version in (("control", "v2"), ("treatment", "v4")):
        assert f'prerank_request_seconds_count{{arm="{arm}"}}' in metrics
        assert f'prerank_active_version{{arm="{arm}",model="fit",version="{version}"}} 1.0' in (
            metrics
        )
    clear_split(world.client, world.keys)
    world.wait(lambda r: "treatment" not in r["arms"], "the split to end")
    assert {world.rank(u, candidates[:10])["arm"] for u in range(20)} == {"control"}


def test_explain_names_each_items_cluster_and_clusters_lists_them(world: World, tiny_data) -> None:
    clusters = httpx.get(f"{world.service.url}/clusters").json()
    assert clusters["model_version"] == world.ready()["version"]
    sizes = [c["size"] for c in clusters["clusters"]]
    assert sum(sizes) == clusters["items"] == tiny_data.num_items
    manifest = read_manifest_of(world.client, world.keys, clusters["model_version"])
    assert manifest is not None and len(sizes) == manifest.num_meta_queries
    for cluster in clusters["clusters"]:
        if not cluster["examples"]:
            continue
        assert len(cluster["examples"]) == min(cluster["size"], 5)
        body = world.rank(1, cluster["examples"], explain=True)
        assert {item["meta_index"] for item in body["items"]} == {cluster["meta_index"]}
    plain = world.rank(1, tiny_data.catalogue[:5].tolist())
    assert all("meta_index" not in item for item in plain["items"])
    missing = httpx.get(f"{world.service.url}/clusters", params={"arm": "treatment"})
    assert missing.status_code == 404


def test_memory_after_twenty_swaps_stays_within_ten_percent(
    world: World, candidates: list[int]
) -> None:
    def swap_to(version: str) -> None:
        activate(world.client, world.keys, version)
        world.wait_version(version)
        for user in range(5):
            world.rank(user, candidates)

    for version, scale in (("m1", 0.8), ("m2", 1.2)):
        world.publish(world.bundle(version, scale=scale), activate=False)
    swap_to("m1")
    after_first = world.rss_kib()
    rss = [after_first]
    for i in range(20):
        swap_to("m2" if i % 2 == 0 else "m1")
        rss.append(world.rss_kib())
    print(f"service RSS (KiB) after each swap: {rss}")
    print(f"after 20 swaps / after the first: {rss[-1] / after_first:.3f}")
    assert rss[-1] <= 1.10 * after_first
    assert np.median(rss) <= 1.10 * after_first
