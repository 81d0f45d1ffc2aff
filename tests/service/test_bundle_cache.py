"""The local bundle cache: a version loaded from Redis is kept on disk, whole, and a restart while
Redis is down serves it (degraded: no feature store), through the same checks as any bundle."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from prerank_contract.bundle import read_manifest, verify_bundle_dir
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import MANIFEST_FILE
from prerank_contract.redis_store import read_version
from service.bundle_cache import BundleCache
from tests.conftest import (
    PrivateRedis,
    clone_bundle,
    publish_test_bundle,
    start_service,
)

KEYS = RedisKeys("cache:")


def test_store_keeps_the_newest_versions_whole(redis_server, fit_bundle, tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache", keep=2)
    versions = []
    for index in range(3):
        version = f"v{index}"
        path = clone_bundle(fit_bundle.path, tmp_path / "bundles", version, heads_scale=1.0 + index)
        publish_test_bundle(redis_server, KEYS, path, keep_versions=5)
        cache.store(*read_version(redis_server, KEYS, version))
        versions.append(version)
        time.sleep(0.01)  # distinct mtimes
    kept = sorted(
        p.name for p in (tmp_path / "cache").iterdir() if p.is_dir() and not p.is_symlink()
    )
    assert kept == ["v1", "v2"]
    assert cache.current() == (tmp_path / "cache" / "v2").resolve()
    assert verify_bundle_dir(cache.current()).version == "v2"  # every sha256 holds
    # storing the current version again rewrites nothing
    before = (cache.current() / MANIFEST_FILE).stat().st_mtime_ns
    cache.store(*read_version(redis_server, KEYS, "v2"))
    assert (cache.current() / MANIFEST_FILE).stat().st_mtime_ns == before


def test_a_restart_while_redis_is_down_serves_the_cached_version(
    fit_bundle, tiny_data, tmp_path: Path
) -> None:
    server = PrivateRedis(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    client = server.start()
    publish_test_bundle(client, KEYS, fit_bundle.path)
    client.close()
    env = {
        "PRERANK_REDIS_URL": server.url,
        "PRERANK_REDIS_KEY_PREFIX": KEYS.prefix,
        "PRERANK_BUNDLE_CACHE_DIR": str(tmp_path / "cache"),
        "PRERANK_REDIS_TIMEOUT_SECONDS": "0.5",
    }
    first = start_service(env, tmp_path / "first.log")
    try:
        assert httpx.get(f"{first.url}/readyz").json()["source"].startswith("redis:")
    finally:
        first.stop()
        server.stop()
    assert read_manifest(tmp_path / "cache" / "current").version == fit_bundle.manifest.version
    second = start_service(env, tmp_path / "second.log")
    try:
        body = {"user_id": 1, "candidates": tiny_data.catalogue[:30].tolist()}
        answer = httpx.post(f"{second.url}/prerank", json=body).json()
        ready = httpx.get(f"{second.url}/readyz").json()  # the failed read is known by now
    finally:
        second.stop()
    assert ready["ready"] is True, second.log()
    assert ready["version"] == fit_bundle.manifest.version
    assert ready["source"] == str((tmp_path / "cache" / fit_bundle.manifest.version).resolve())
    assert "feature_store" in ready["degraded"]
    assert len(answer["items"]) == 30 and answer["degraded_reasons"] == ["feature_store"]
