"""The Redis users of docker/redis/users.acl on a real redis-server that loads the file: the
publisher publishes, rolls back, splits and restores, the service serves and hot-swaps with its
read-only user, and no role is refused a command it runs (Redis's ACL LOG stays empty). The
service's credentials get NOPERM on a write, on a key outside the prefix and on an admin command.
The event consumer applies events as its user, and may not touch a pointer."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from docker.redis.acl import (
    ACL_FILE,
    CONSUMER_USER,
    PUBLISHER_USER,
    ROLES,
    SERVICE_USER,
    main,
    password_digest,
    with_passwords,
)
from offline_jobs.events.consumer import EventConsumer
from offline_jobs.events.stores import store_format
from offline_jobs.release.commands import (
    publish_feature_store,
    publish_version,
    roll_back,
    split_traffic,
)
from offline_jobs.release.restore import restore_release
from offline_jobs.release.versions import list_versions
from offline_jobs.settings import JobSettings
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_store import active_version, published_versions
from prerank_contract.traffic import TrafficSplit
from research.service_process import ServiceProcess
from tests.conftest import PrivateRedis, clone_bundle, start_service, tiny_settings, wait_for
from tests.offline_jobs.events.streams import event_settings, run_until_done
from tests.service.acl_users import ADMIN_USER, acl_with_admin, new_passwords

# users.acl is written for the default key prefix; a private server holds no one else's keys
KEYS = RedisKeys()
POLL_SECONDS = 0.2
DIGEST = re.compile(r"#[0-9a-f]{64}")  # a password digest in an ACL file
CANDIDATES = 50


@dataclass(frozen=True)
class AclServer:
    """A redis-server loading users.acl with passwords of the test's own, and an admin client."""

    server: PrivateRedis
    admin: redis.Redis
    passwords: dict[str, str]

    def job_settings(self, artifacts_dir: Path, user: str) -> JobSettings:
        """The tiny job's settings, logged in as `user`."""
        return tiny_settings(artifacts_dir, KEYS.prefix).model_copy(
            update={
                "redis_url": self.server.url,
                "redis_username": user,
                "redis_password": SecretStr(self.passwords[user]),
            }
        )

    def client(self, user: str) -> redis.Redis:
        return redis.Redis.from_url(self.server.url, username=user, password=self.passwords[user])


@pytest.fixture
def acl_server(tmp_path: Path) -> Iterator[AclServer]:
    passwords = new_passwords()
    acl_file = tmp_path / "users.acl"
    acl_file.write_text(acl_with_admin(passwords))
    server = PrivateRedis(
        tmp_path, acl_file=acl_file, username=ADMIN_USER, password=passwords[ADMIN_USER]
    )
    admin = server.start()
    yield AclServer(server, admin, passwords)
    admin.close()
    server.stop()


def serving(service: ServiceProcess) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{service.url}/readyz", timeout=10).json()
    return answer


def wait_serving(service: ServiceProcess, version: str, treatment: str | None = None) -> None:
    def arrived() -> bool:
        ready = serving(service)
        arms = {arm: a["version"] for arm, a in ready.get("arms", {}).items()}
        return ready.get("version") == version and arms.get("treatment") == treatment

    wait_for(arrived, f"{version} (treatment {treatment}) to serve", service.log)


def test_publish_serve_hot_swap_rollback_and_restore_with_the_role_users(
    acl_server: AclServer, fit_bundle, tiny_data, tmp_path: Path
) -> None:
    job = acl_server.job_settings(tmp_path / "artifacts", PUBLISHER_USER)
    publisher = job.connect_redis()
    bundles = tmp_path / "bundles"
    first = clone_bundle(fit_bundle.path, bundles, "v1")
    second = clone_bundle(fit_bundle.path, bundles, "v2", heads_scale=1.5)
    publish_feature_store(job, publisher, tiny_data, "v1", progress=False)
    publish_version(job, publisher, first, progress=False)
    password_file = tmp_path / "service-password"
    password_file.write_text(acl_server.passwords[SERVICE_USER] + "\n")
    service = start_service(
        {
            "PRERANK_REDIS_URL": acl_server.server.url,
            "PRERANK_REDIS_USERNAME": SERVICE_USER,
            "PRERANK_REDIS_PASSWORD_FILE": str(password_file),
            "PRERANK_POLL_INTERVAL_SECONDS": str(POLL_SECONDS),
        },
        tmp_path / "service.log",
    )
    body = {
        "user_id": int(tiny_data.user_ids[0]),
        "candidates": tiny_data.catalogue[:CANDIDATES].tolist(),
    }
    try:
        wait_serving(service, "v1")
        answer = httpx.post(f"{service.url}/prerank", json=body, timeout=30).json()
        # keys no list names, as a publisher killed mid-write leaves them: publish looks at them
        publisher.set(KEYS.manifest("orphan"), b"{}")
        publish_version(job, publisher, second, progress=False)  # the hot swap
        wait_serving(service, "v2")
        rolled_back = roll_back(job, publisher, None)
        wait_serving(service, "v1")
        split_traffic(job, publisher, TrafficSplit(version="v2", share=0.5))
        wait_serving(service, "v1", treatment="v2")
        versions = [(info.version, info.active) for info in list_versions(publisher, KEYS)]
        split_traffic(job, publisher, None)
        # a lost pointer and a list out of order: restore puts both back
        publisher.delete(KEYS.active, KEYS.versions)
        publisher.rpush(KEYS.versions, "v1", "v2")
        report = restore_release(job, publisher, bundle_dirs=[bundles], progress=False)
        restored = (active_version(publisher, KEYS), published_versions(publisher, KEYS))
        wait_serving(service, "v1")
        refused = acl_server.admin.acl_log()
    finally:
        service.stop()
        publisher.close()

    assert answer["model_version"] == "v1" and answer["user_source"] == "feature_store", answer
    assert not answer["degraded"], answer
    assert rolled_back == "active: v2 -> v1"
    assert versions == [("v2", False), ("v1", True)]
    assert report.problems == [] and restored == ("v1", ["v2", "v1"])
    assert refused == [], f"a role was refused a command it runs: {refused}"


def test_the_service_user_reads_its_prefix_only_and_writes_nothing(
    acl_server: AclServer,
) -> None:
    acl_server.admin.set(KEYS.active, "v1")
    acl_server.admin.set("other:key", "theirs")
    service = acl_server.client(SERVICE_USER)
    try:
        assert service.get(KEYS.active) == b"v1"
        writes: list[Callable[[], object]] = [
            lambda: service.set(KEYS.active, "v2"),
            lambda: service.delete(KEYS.active),
            lambda: service.lpush(KEYS.versions, "v2"),
            lambda: service.hset(KEYS.files("v1"), "a", 1),
        ]
        others: list[Callable[[], object]] = [
            lambda: service.get("other:key"),  # outside the prefix
            lambda: service.flushall(),
            lambda: service.config_get("*"),
            lambda: service.keys("*"),
            lambda: service.acl_list(),
        ]
        for refused in writes + others:
            with pytest.raises(redis.exceptions.NoPermissionError):
                refused()
    finally:
        service.close()
    assert acl_server.admin.get(KEYS.active) == b"v1"


def test_the_consumer_user_applies_events_and_writes_no_pointer(
    acl_server: AclServer, fit_bundle, tiny_data, tmp_path: Path
) -> None:
    """The real consumer, logged in as its role: it reads the pointers and the manifest, applies
    an event, dead-letters a malformed one (a claimed one too, through its script), and is
    refused nothing it runs; a pointer, a manifest or an admin command stay out of its reach."""
    job = acl_server.job_settings(tmp_path / "artifacts", PUBLISHER_USER)
    publisher = job.connect_redis()
    publish_feature_store(job, publisher, tiny_data, "v1", progress=False)
    publish_version(
        job, publisher, clone_bundle(fit_bundle.path, tmp_path / "b", "v1"), progress=False
    )
    publisher.close()
    acl_server.admin.xadd(KEYS.events, {"user": "7", "item": "3"})  # the caller's pipeline
    acl_server.admin.xadd(KEYS.events, {"user": "7"})
    settings = event_settings(
        acl_server.server.url,
        KEYS,
        redis_username=CONSUMER_USER,
        redis_password=SecretStr(acl_server.passwords[CONSUMER_USER]),
    )
    events = EventConsumer(settings.redis_client(), settings)
    run_until_done(events, acl_server.admin)
    events.handle(acl_server.admin.xrange(KEYS.events), claimed=True)  # as a claim would
    store = store_format(fit_bundle.manifest).store
    record = json.loads(acl_server.admin.get(KEYS.user(store, 7)))
    assert record["history"][-1] == 3
    assert len(acl_server.admin.xrange(KEYS.events_dead)) == 1
    assert acl_server.admin.acl_log() == []
    consumer = acl_server.client(CONSUMER_USER)
    try:
        for refused in (
            lambda: consumer.set(KEYS.active, "v2"),
            lambda: consumer.set(KEYS.manifest("v1"), b"{}"),
            lambda: consumer.lpush(KEYS.versions, "v2"),
            lambda: consumer.flushall(),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                refused()
    finally:
        consumer.close()


def test_the_default_user_is_disabled(acl_server: AclServer) -> None:
    anonymous = redis.Redis.from_url(acl_server.server.url)
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.get(KEYS.active)
    finally:
        anonymous.close()


def test_the_password_tool_sets_each_roles_digest_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = ACL_FILE.read_text()
    files = []
    for role in ROLES:
        (tmp_path / role).write_text(f"{role}-secret\n")  # as `echo` writes a password file
        files += ["--password-file", f"{role}={tmp_path / role}"]
    assert main(files) == 0
    written = capsys.readouterr().out
    for role in ROLES:
        assert f"user {role} on #{password_digest(f'{role}-secret')} " in written
        assert f"{role}-secret" not in written
    # the rules are the shipped ones: only the digests differ
    assert re.sub(DIGEST, "#", written) == re.sub(DIGEST, "#", shipped)
    assert main(files[:2]) == 2  # a role left out would stay locked: refused
    with pytest.raises(ValueError, match="no such user"):
        with_passwords(shipped, {"nobody": "x"})
