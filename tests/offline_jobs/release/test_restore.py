"""`restore` on a private redis-server that lost its data: what the ledger recorded comes back as
it was, a second run writes nothing, and what cannot be put back faithfully is refused by name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from offline_jobs.release.commands import publish_feature_store, publish_version, split_traffic
from offline_jobs.release.ledger import read_ledger
from offline_jobs.release.restore import restore_release
from offline_jobs.settings import JobSettings
from prerank_contract.gate import GateConfig
from prerank_contract.traffic import TrafficSplit
from tests.conftest import REPO_ROOT, PrivateRedis, clone_bundle, job_env, tiny_settings

PREFIX = "restore:"
WRITES = ("set", "hset", "lpush", "rpush", "del", "lrem", "unlink")  # what a no-op must not run


@dataclass
class Published:
    settings: JobSettings
    client: redis.Redis
    versions: tuple[str, ...]


def normalised(client: redis.Redis) -> dict[str, Any]:
    """Every key and its value, without the times a publish stamps (when a marker was written,
    when the gate checked): what must be the same after a restore."""
    found: dict[str, Any] = {}
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        kind = client.type(raw).decode()
        if kind == "list":
            found[key] = client.lrange(raw, 0, -1)
        elif kind == "hash":
            found[key] = client.hgetall(raw)
        elif key.endswith((":marker", ":manifest")):
            document = orjson.loads(client.get(raw) or b"{}")
            document.pop("written_at", None)
            if document.get("gate"):
                document["gate"].pop("checked_at")
            found[key] = document
        else:
            found[key] = client.get(raw)
    return found


def write_count(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in WRITES)


@pytest.fixture
def published(tmp_path: Path, fit_bundle, tiny_data) -> Iterator[Published]:
    """Two versions (the second inactive, taking a quarter of users), and the feature store,
    published through the release commands with a ledger under `tmp_path`."""
    server = PrivateRedis(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    client = server.start()
    settings = tiny_settings(tmp_path / "artifacts", PREFIX).model_copy(
        update={"redis_url": server.url}
    )
    first = clone_bundle(fit_bundle.path, settings.bundles_dir, "r1")
    second = clone_bundle(fit_bundle.path, settings.bundles_dir, "r2", heads_scale=0.5)
    publish_feature_store(settings, client, tiny_data, "r1", progress=False)
    publish_version(settings, client, first, progress=False)
    publish_version(settings, client, second, activate=False, progress=False)
    split_traffic(settings, client, TrafficSplit(version="r2", share=0.25))
    yield Published(settings, client, ("r1", "r2"))
    client.close()
    server.stop()


def test_restore_puts_back_what_a_flush_lost_and_a_second_run_writes_nothing(
    published: Published,
) -> None:
    settings, client = published.settings, published.client
    before = normalised(client)
    client.flushall()
    report = restore_release(settings, client, progress=False)
    assert report.problems == []
    assert normalised(client) == before
    assert sum("restored" in line for line in report.done) == 5  # 2 versions, store, pointer, split

    client.config_resetstat()
    again = restore_release(settings, client, progress=False)
    assert again.problems == [] and not any("restored" in line for line in again.done)
    assert write_count(client) == 0
    assert normalised(client) == before


def test_a_partial_loss_is_put_back_alone(published: Published) -> None:
    settings, client = published.settings, published.client
    keys = settings.keys
    before = normalised(client)
    client.delete(keys.active, keys.version_marker("r2"))
    report = restore_release(settings, client, progress=False)
    assert report.problems == []
    assert [line for line in report.done if "restored" in line] == [
        f"version r2: restored (from {settings.bundles_dir / 'r2'})",
        "active pointer: r1 restored",
    ]
    assert normalised(client) == before


def test_a_version_published_after_the_loss_stays_the_newest(
    published: Published, fit_bundle
) -> None:
    settings, client = published.settings, published.client
    client.flushall()
    third = clone_bundle(fit_bundle.path, settings.bundles_dir, "r3")
    publish_version(settings, client, third, activate=False, progress=False)
    recorded = read_ledger(settings.release_ledger).releases[PREFIX]
    assert [v.version for v in recorded.versions] == ["r3", "r2", "r1"]  # the loss erased nothing
    assert restore_release(settings, client, progress=False).problems == []
    assert client.lrange(settings.keys.versions, 0, -1) == [b"r3", b"r2", b"r1"]
    assert client.get(settings.keys.active) == b"r1"


def test_restore_gates_as_publish_does(published: Published) -> None:
    settings = published.settings.model_copy(update={"gate": GateConfig(min_auc=0.99)})
    client = published.client
    client.flushall()
    report = restore_release(settings, client, progress=False)
    refused = [p for p in report.problems if "gate refused" in p]
    assert [p.split(":")[0] for p in refused] == ["version r1", "version r2"]
    assert client.keys(f"{PREFIX}v:*") == []  # nothing of a refused version written
    assert client.get(settings.keys.active) is None
    assert any(p.startswith("active pointer:") for p in report.problems)


def test_a_feature_store_from_other_data_is_not_written(published: Published) -> None:
    other = published.settings.synthetic.model_copy(update={"seed": 99})
    settings = published.settings.model_copy(update={"synthetic": other})
    client = published.client
    client.flushall()
    report = restore_release(settings, client, progress=False)
    (problem,) = report.problems
    assert problem.startswith("feature store ") and "the data changed since" in problem
    assert client.keys(f"{PREFIX}user:*") == [] and client.keys(f"{PREFIX}store:*") == []
    assert client.get(settings.keys.active) == b"r1"  # the rest came back


def test_bundles_are_found_in_a_bundle_cache(published: Published, tmp_path: Path) -> None:
    settings, client = published.settings, published.client
    cache = tmp_path / "cache"
    shutil.move(settings.bundles_dir, cache)
    client.flushall()
    lost = restore_release(settings, client, progress=False)
    assert all(str(cache) not in p for p in lost.problems)
    assert {p.split(":")[0] for p in lost.problems} >= {"version r1", "version r2"}
    assert "no bundle found at" in lost.problems[0]

    client.flushall()
    found = restore_release(settings, client, bundle_dirs=[cache], progress=False)
    assert found.problems == []
    assert client.get(settings.keys.active) == b"r1"


def test_the_cli_restores_and_says_what_it_could_not(published: Published) -> None:
    settings, client = published.settings, published.client
    client.flushall()
    env = job_env(settings)
    command = [sys.executable, "-m", "offline_jobs", "restore", "--quiet"]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "active pointer: r1 restored" in done.stdout
    assert client.get(settings.keys.active) == b"r1"

    env["PRERANK_REDIS_KEY_PREFIX"] = "never-published:"
    none = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert none.returncode == 2
    assert str(settings.release_ledger) in none.stderr and "never-published:" in none.stderr


def test_the_ledger_records_each_release_command(published: Published) -> None:
    recorded = read_ledger(published.settings.release_ledger).releases
    assert list(recorded) == [PREFIX]
    release = recorded[PREFIX]
    assert [v.version for v in release.versions] == ["r2", "r1"]
    assert release.active == "r1" and release.split == TrafficSplit(version="r2", share=0.25)
    (gate_r2,) = [v.gate for v in release.versions if v.version == "r2"]
    assert gate_r2 is not None and gate_r2.compared_with == "r1"
