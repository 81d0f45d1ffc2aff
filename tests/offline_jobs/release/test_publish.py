"""Publishing to a real Redis: read-back, the atomic pointer, retention, and a real mid-publish
failure (Redis out of memory) that must leave the previous version active and readable."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from offline_jobs.release.publish import PublishError, publish_bundle
from prerank_contract.bundle import BundleError
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_store import active_version, read_version
from tests.conftest import ORPHAN_MIN_IDLE_SECONDS, TEST_GATE, clone_bundle

CHUNK = 4096


def publish(client: redis.Redis, keys: RedisKeys, path: Path, keep: int = 3):
    return publish_bundle(
        client,
        keys,
        path,
        chunk_bytes=CHUNK,
        keep_versions=keep,
        gate=TEST_GATE,
        orphan_min_idle_seconds=ORPHAN_MIN_IDLE_SECONDS,
        progress=False,
    )


def test_publish_reads_back_every_byte(redis_server: redis.Redis, fit_bundle) -> None:
    keys = RedisKeys("t:")
    result = publish(redis_server, keys, fit_bundle.path)
    assert result.action == "published"
    assert active_version(redis_server, keys) == fit_bundle.manifest.version
    manifest, files = read_version(redis_server, keys, fit_bundle.manifest.version)
    assert manifest.model_copy(update={"gate": None}) == fit_bundle.manifest
    assert manifest.gate is not None and manifest.gate.problems == []
    assert manifest.gate.min_auc == TEST_GATE.min_auc
    for name in manifest.files:
        assert files[name] == (fit_bundle.path / name).read_bytes()
    # Files larger than a chunk are split, so chunking is exercised.
    assert max(int(v) for v in redis_server.hvals(keys.files(manifest.version))) > 1


def test_republishing_the_active_version_is_a_no_op(redis_server: redis.Redis, fit_bundle) -> None:
    keys = RedisKeys("t:")
    publish(redis_server, keys, fit_bundle.path)
    again = publish(redis_server, keys, fit_bundle.path)
    assert again.action == "already_active"
    assert again.bytes_written == 0


def test_damaged_active_version_is_published_again(redis_server: redis.Redis, fit_bundle) -> None:
    keys = RedisKeys("t:")
    version = fit_bundle.manifest.version
    publish(redis_server, keys, fit_bundle.path)
    redis_server.set(keys.file_chunk(version, "scorer.onnx", 0), b"garbage")
    with pytest.raises(BundleError, match=r"scorer\.onnx"):
        read_version(redis_server, keys, version)
    assert publish(redis_server, keys, fit_bundle.path).action == "published"
    read_version(redis_server, keys, version)


def test_out_of_memory_mid_publish_keeps_previous_version(
    redis_server: redis.Redis, fit_bundle, tmp_path: Path
) -> None:
    keys = RedisKeys("t:")
    v1 = fit_bundle.manifest.version
    publish(redis_server, keys, fit_bundle.path)
    bundle_bytes = sum(entry.bytes for entry in fit_bundle.manifest.files.values())
    used = int(redis_server.info("memory")["used_memory"])
    # Room for about half of a second copy: the next publish fails part-way, for real.
    redis_server.config_set("maxmemory", used + bundle_bytes // 2)
    redis_server.config_set("maxmemory-policy", "noeviction")
    v2_path = clone_bundle(fit_bundle.path, tmp_path, "fit-v2")
    with pytest.raises(PublishError, match=r"fit-v2: writing .* failed: .*maxmemory"):
        publish(redis_server, keys, v2_path)
    assert active_version(redis_server, keys) == v1
    manifest, _ = read_version(redis_server, keys, v1)
    assert manifest.version == v1
    assert not list(redis_server.scan_iter(match=keys.version_pattern("fit-v2")))  # cleaned up
    # With memory back, the same publish succeeds and switches the pointer.
    redis_server.config_set("maxmemory", 0)
    assert publish(redis_server, keys, v2_path).action == "published"
    assert active_version(redis_server, keys) == "fit-v2"


def test_retention_drops_old_versions_but_never_the_active(
    redis_server: redis.Redis, fit_bundle, tmp_path: Path
) -> None:
    keys = RedisKeys("t:")
    versions = [f"fit-r{i}" for i in range(3)]
    for version in versions:
        publish(redis_server, keys, clone_bundle(fit_bundle.path, tmp_path, version), keep=2)
    listed = [v.decode() for v in redis_server.lrange(keys.versions, 0, -1)]
    assert listed == ["fit-r2", "fit-r1"]
    assert not list(redis_server.scan_iter(match=keys.version_pattern("fit-r0")))
    read_version(redis_server, keys, "fit-r1")  # the rollback target is intact
    assert active_version(redis_server, keys) == "fit-r2"


def test_corrupted_bundle_on_disk_is_never_published(
    redis_server: redis.Redis, fit_bundle, tmp_path: Path
) -> None:
    keys = RedisKeys("t:")
    path = clone_bundle(fit_bundle.path, tmp_path, "fit-bad")
    (path / "item_heads.npy").write_bytes(b"truncated")
    with pytest.raises(BundleError, match=r"item_heads\.npy"):
        publish(redis_server, keys, path)
    assert active_version(redis_server, keys) is None
    assert not list(redis_server.scan_iter(match="t:v:*"))
