"""Presence markers on a real Redis: a feature store's marker is written after every record, a
version's after its read-back and before the pointer moves, and a version's marker goes with the
version's keys (retention, a failed publish)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from offline_jobs.release.publish import PublishError, publish_user_features, records_digest
from prerank_contract.keys import RedisKeys
from prerank_contract.markers import StoreMarker, VersionMarker, read_marker
from prerank_contract.redis_store import active_version
from tests.conftest import clone_bundle, publish_test_bundle


class Killed(BaseException):
    """Stops the publisher as SIGKILL would: no clean-up runs."""


@pytest.fixture(scope="module")
def bundles(fit_bundle, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("markers")
    return {v: clone_bundle(fit_bundle.path, root, v) for v in ("m1", "m2", "m3")}


def test_the_feature_store_marker_says_what_was_written(redis_server: redis.Redis, tiny_data):
    keys = RedisKeys("m:")
    before = datetime.now(UTC).replace(microsecond=0)
    written = publish_user_features(
        redis_server, keys, tiny_data, 50, version="fit-m1", progress=False
    )
    schema = tiny_data.schema.fingerprint
    marker = read_marker(redis_server, keys.store_marker(schema), StoreMarker)
    assert marker == written
    assert (marker.schema_fingerprint, marker.records) == (schema, tiny_data.num_users)
    assert marker.records_sha256 == records_digest(tiny_data)
    assert (marker.dataset, marker.version) == (tiny_data.name, "fit-m1")
    assert before <= datetime.fromisoformat(marker.written_at) <= datetime.now(UTC)
    records = list(redis_server.scan_iter(match=keys.user_pattern(schema)))
    assert len(records) == tiny_data.num_users  # the marker is no record


def test_a_store_cut_short_leaves_no_marker(redis_server: redis.Redis, tiny_data) -> None:
    """A writer that may write the marker but no record (a real ACL of the real server): had the
    marker been written first, it would be there."""
    keys = RedisKeys("cut:")
    redis_server.acl_setuser(
        "marker-only",
        enabled=True,
        passwords=["+pw"],
        keys=[f"{keys.prefix}store:*"],
        commands=["+@all"],
    )
    port = redis_server.connection_pool.connection_kwargs["port"]
    with (
        redis.Redis(port=port, username="marker-only", password="pw") as writer,
        pytest.raises(PublishError, match="writing user features failed"),
    ):
        publish_user_features(writer, keys, tiny_data, 50, progress=False)
    assert redis_server.get(keys.store_marker(tiny_data.schema.fingerprint)) is None


def test_the_version_marker_is_written_before_the_pointer_moves(
    redis_server: redis.Redis, bundles
) -> None:
    keys = RedisKeys("ver:")
    publish_test_bundle(redis_server, keys, bundles["m1"])
    marker = read_marker(redis_server, keys.version_marker("m1"), VersionMarker)
    assert marker is not None
    bundle_files = [p for p in bundles["m1"].iterdir() if p.name != "manifest.json"]
    assert (marker.version, marker.files) == ("m1", len(bundle_files))
    assert marker.bytes == sum(p.stat().st_size for p in bundle_files)

    def stop_at(step: str):
        def on_step(reached: str) -> None:
            if reached == step:
                raise Killed(step)

        return on_step

    with pytest.raises(Killed):  # read back whole, marker not yet written
        publish_test_bundle(redis_server, keys, bundles["m2"], on_step=stop_at("read_back"))
    assert redis_server.get(keys.version_marker("m2")) is None
    with pytest.raises(Killed):  # marker written, pointer not yet moved
        publish_test_bundle(redis_server, keys, bundles["m2"], on_step=stop_at("marker_written"))
    assert redis_server.get(keys.version_marker("m2")) is not None
    assert active_version(redis_server, keys) == "m1"
    # the next publish collects the killed one's keys, its marker with them
    publish_test_bundle(redis_server, keys, bundles["m3"], orphan_min_idle_seconds=0)
    assert redis_server.get(keys.version_marker("m2")) is None


def test_retention_and_a_failed_publish_delete_the_marker(
    redis_server: redis.Redis, bundles
) -> None:
    keys = RedisKeys("r:")
    publish_test_bundle(redis_server, keys, bundles["m1"], keep_versions=1)
    publish_test_bundle(redis_server, keys, bundles["m2"], keep_versions=1)
    assert redis_server.get(keys.version_marker("m1")) is None  # dropped by retention
    assert redis_server.get(keys.version_marker("m2")) is not None

    def refuse_after_marker(step: str) -> None:
        if step == "marker_written":
            raise RuntimeError("injected")

    with pytest.raises(RuntimeError):
        publish_test_bundle(redis_server, keys, bundles["m3"], on_step=refuse_after_marker)
    assert redis_server.get(keys.version_marker("m3")) is None  # cleaned up with its keys


def test_republishing_the_active_version_restores_a_missing_marker(
    redis_server: redis.Redis, bundles
) -> None:
    keys = RedisKeys("a:")
    publish_test_bundle(redis_server, keys, bundles["m1"])
    redis_server.delete(keys.version_marker("m1"))  # as if published before markers existed
    assert publish_test_bundle(redis_server, keys, bundles["m1"]).action == "already_active"
    restored = read_marker(redis_server, keys.version_marker("m1"), VersionMarker)
    assert restored is not None and restored.version == "m1"
    older = restored.model_copy(update={"written_at": "2000-01-01T00:00:00+00:00"})
    redis_server.set(keys.version_marker("m1"), older.model_dump_json())
    publish_test_bundle(redis_server, keys, bundles["m1"])
    kept = read_marker(redis_server, keys.version_marker("m1"), VersionMarker)
    assert kept == older  # an existing marker is not rewritten
