"""Crash-safe publish: the publisher stopped after every step, by an exception (its clean-up runs)
or as if killed (nothing after the fault runs). Before the pointer moves the previous version
stays active and whole; the next publish garbage-collects what a killed publisher left."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from offline_jobs.release.publish import PUBLISH_STEPS
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_store import active_version, read_version
from tests.conftest import clone_bundle, publish_test_bundle


class InjectedFaultError(Exception):
    """A failure the publisher sees and handles."""


class Killed(BaseException):
    """Like SIGKILL: no `except Exception` clause runs, nothing is cleaned up."""


def steps(bundle_files: list[str]) -> list[str]:
    first, *rest = PUBLISH_STEPS
    writes = [f"file:{name}" for name in sorted(bundle_files)]
    return [first, rest[0], *writes, *rest[1:]]


def publish(client, keys, path: Path, fail_at: str | None = None, fault=InjectedFaultError):
    def on_step(step: str) -> None:
        if step == fail_at:
            raise fault(step)

    return publish_test_bundle(
        client,
        keys,
        path,
        orphan_min_idle_seconds=0,
        on_step=on_step,
    )


def versions_with_keys(client: redis.Redis, keys: RedisKeys) -> set[str]:
    found = set()
    for key in client.scan_iter(match=keys.version_pattern("*")):
        found.add(key.decode()[len(keys.prefix) + 2 :].split(":", 1)[0])
    return found


@pytest.fixture(scope="module")
def bundles(fit_bundle, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("faults")
    return {v: clone_bundle(fit_bundle.path, root, v) for v in ("v1", "v2", "v3")}


def test_every_step_is_covered(fit_bundle) -> None:
    assert {"gated", "manifest_written", "activated"} <= set(steps(list(fit_bundle.manifest.files)))


@pytest.mark.parametrize("fault", [InjectedFaultError, Killed], ids=["raised", "killed"])
def test_a_fault_after_any_step_leaves_a_whole_active_version(
    redis_server: redis.Redis, bundles, fit_bundle, fault
) -> None:
    for index, step in enumerate(steps(list(fit_bundle.manifest.files))):
        keys = RedisKeys(f"f{index}:")
        publish(redis_server, keys, bundles["v1"])
        with pytest.raises(fault):
            publish(redis_server, keys, bundles["v2"], fail_at=step, fault=fault)
        moved = step in ("activated", "retention")  # the pointer moved before the fault
        expected = "v2" if moved else "v1"
        assert active_version(redis_server, keys) == expected, step
        read_version(redis_server, keys, expected)  # whole: every chunk, every sha256
        read_version(redis_server, keys, "v1")
        if fault is InjectedFaultError and not moved:  # the publisher cleaned up after itself
            assert versions_with_keys(redis_server, keys) == {"v1"}, step
        # The next publish succeeds and leaves no orphan: every version with keys is listed
        # and reads back whole.
        publish(redis_server, keys, bundles["v3"])
        assert active_version(redis_server, keys) == "v3"
        listed = {v.decode() for v in redis_server.lrange(keys.versions, 0, -1)}
        left = versions_with_keys(redis_server, keys)
        assert left <= listed, (step, left, listed)
        for version in left:
            read_version(redis_server, keys, version)


def test_orphans_of_a_publish_still_running_are_left_alone(
    redis_server: redis.Redis, bundles, fit_bundle
) -> None:
    keys = RedisKeys("busy:")
    publish(redis_server, keys, bundles["v1"])
    with pytest.raises(Killed):
        publish(redis_server, keys, bundles["v2"], fail_at="counts_written", fault=Killed)
    publish_test_bundle(redis_server, keys, bundles["v3"], orphan_min_idle_seconds=600)
    assert "v2" in versions_with_keys(redis_server, keys)  # touched seconds ago: maybe alive
