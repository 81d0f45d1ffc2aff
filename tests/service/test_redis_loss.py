"""Redis that forgets: a private redis-server loses its data (FLUSHALL, what a restart without
persistence does) while a service follows it under load. The service notices on its next poll,
flags every answer `feature_store_lost`, names the lost store and the missing pointer in /readyz
and /metrics, keeps answering from memory, and clears all of it once everything is published
again by `python -m offline_jobs restore`, answering as before the loss."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from offline_jobs.release.commands import publish_feature_store, publish_version
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_store import active_version, published_versions
from service.lifecycle import PresenceWatch
from service.settings import ServiceSettings
from service.snapshot import Snapshot
from service.state import Serving
from tests.conftest import REPO_ROOT, PrivateRedis, job_env, start_service, tiny_settings, wait_for

KEYS = RedisKeys("loss:")
POLL_SECONDS = 0.2
# The loss must show within one poll interval plus this margin. Generous on purpose: on a loaded
# 2-core machine the poll thread shares the cores with uvicorn, the load thread, this test's own
# /readyz probes and the rest of the suite, so a poll may start well after it is due.
NOTICE_MARGIN_SECONDS = 2.0
ANSWERS_PER_PHASE = 20  # answers each phase must collect, so "every answer" means something
ISO_SECONDS = re.compile(r"since (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")


class Load:
    """One thread sending the same /prerank body in a closed loop; keeps (sent at, answered at,
    both monotonic seconds; status; answer) of every request."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        self.url, self.body = url, body
        self.answers: list[tuple[float, float, int, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load")

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                response = http.post(f"{self.url}/prerank", json=self.body)
                payload = response.json() if response.status_code == 200 else {}
                self.answers.append((sent, time.monotonic(), response.status_code, payload))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def within(self, sent_from: float = 0.0, answered_by: float = math.inf) -> list[dict[str, Any]]:
        """The answers to requests sent at `sent_from` or later and answered before
        `answered_by`: wholly inside one phase."""
        return [
            payload
            for sent, answered, _, payload in list(self.answers)
            if sent >= sent_from and answered < answered_by
        ]

    def wait_answers(self, start: float, count: int = ANSWERS_PER_PHASE) -> None:
        wait_for(lambda: len(self.within(start)) >= count, f"{count} answers")


def gauge(url: str, name: str) -> float:
    """One unlabelled gauge of the service's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    (line,) = [line for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(line.split()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)  # no persistence: its data goes as a restart's would
    yield server
    server.stop()


def test_a_flushed_redis_is_noticed_at_once_and_restored_in_one_command(
    server: PrivateRedis, fit_bundle, tiny_data, tmp_path: Path
) -> None:
    client = server.start()
    job = tiny_settings(tmp_path / "artifacts", KEYS.prefix).model_copy(
        update={"redis_url": server.url}
    )
    version = fit_bundle.manifest.version
    publish_feature_store(job, client, tiny_data, version, progress=False)
    publish_version(job, client, fit_bundle.path, progress=False)
    service = start_service(
        {
            "PRERANK_REDIS_URL": server.url,
            "PRERANK_REDIS_KEY_PREFIX": KEYS.prefix,
            "PRERANK_POLL_INTERVAL_SECONDS": str(POLL_SECONDS),
        },
        tmp_path / "service.log",
    )
    body = {"user_id": int(tiny_data.user_ids[0]), "candidates": tiny_data.catalogue[:50].tolist()}

    def ready() -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"{service.url}/readyz", timeout=10).json()
        return answer

    try:
        wait_for(lambda: ready()["ready"], "the service to be ready")
        # the markers are first read by a background poll, after start-up: wait for one
        started = time.time()
        wait_for(
            lambda: gauge(service.url, "prerank_pointer_checked_timestamp_seconds") > started,
            "a poll after start-up",
        )
        with Load(service.url, body) as load:
            wait_for(lambda: len(load.answers) >= ANSWERS_PER_PHASE, "answers before the loss")
            flushed, flushed_unix = time.monotonic(), time.time()
            client.flushall()
            lost = wait_for(
                lambda: (r := ready())["degraded"].get("feature_store_lost") and r,
                "/readyz to name the lost store",
            )
            noticed, noticed_unix = time.monotonic(), time.time()
            load.wait_answers(noticed)
            lost_gauges = [
                gauge(service.url, name)
                for name in ("prerank_feature_store_lost", "prerank_active_pointer_missing")
            ]
            republished = time.monotonic()
            restore = subprocess.run(
                [sys.executable, "-m", "offline_jobs", "restore", "--quiet"],
                cwd=REPO_ROOT,
                env=job_env(job),
                capture_output=True,
                text=True,
            )
            restored = (active_version(client, KEYS), published_versions(client, KEYS))
            wait_for(lambda: ready()["degraded"] == {}, "/readyz to clear")
            cleared = time.monotonic()
            load.wait_answers(cleared)
            back_gauges = [
                gauge(service.url, name)
                for name in ("prerank_feature_store_lost", "prerank_active_pointer_missing")
            ]
    finally:
        log = service.log()
        service.stop()
        client.close()

    assert [a[2] for a in load.answers if a[2] != 200] == [], log
    assert restore.returncode == 0, restore.stderr
    assert restored == (version, [version])
    schema = tiny_data.schema.fingerprint
    assert f"feature store {schema}: {tiny_data.num_users} records restored" in restore.stdout
    before = load.within(answered_by=flushed)
    assert len(before) >= ANSWERS_PER_PHASE
    assert all(not a["degraded"] and a["user_source"] == "feature_store" for a in before)

    assert noticed - flushed <= POLL_SECONDS + NOTICE_MARGIN_SECONDS, log
    during = load.within(noticed, republished)
    assert len(during) >= ANSWERS_PER_PHASE
    assert all(a["degraded"] and "feature_store_lost" in a["degraded_reasons"] for a in during)
    assert all(a["user_source"] == "cold_start" and len(a["items"]) == 50 for a in during)
    assert lost["ready"] is True and lost["version"] == version
    degraded = lost["degraded"]
    assert KEYS.store_marker(tiny_data.schema.fingerprint) in degraded["feature_store_lost"]
    assert KEYS.active in degraded["active_pointer_missing"]
    assert version in degraded["version_lost"]
    # since when, to the second: between the flush and the moment /readyz said so
    (since,) = ISO_SECONDS.findall(degraded["feature_store_lost"])
    since_unix = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    assert int(flushed_unix) <= since_unix <= noticed_unix
    assert lost_gauges == [1.0, 1.0]

    after = load.within(cleared)
    assert len(after) >= ANSWERS_PER_PHASE
    assert all(not a["degraded"] and a["user_source"] == "feature_store" for a in after)
    assert all(a["items"] == before[0]["items"] for a in [*before, *after])  # same scores
    assert back_gauges == [0.0, 0.0]


def test_only_a_marker_seen_and_then_gone_is_lost(fit_bundle) -> None:
    """The rule of `PresenceWatch`: a store never marked (never published, or published before
    markers existed) is never flagged, even when the version and the pointer vanish."""
    snapshot = Snapshot.from_dir(fit_bundle.path, ServiceSettings(use_redis=False))
    serving = Serving(snapshot)
    watch = PresenceWatch(KEYS)
    store = KEYS.store_marker(snapshot.manifest.feature_schema.fingerprint)
    version = KEYS.version_marker(snapshot.version)
    assert watch.watched(serving) == sorted([store, version])
    assert watch.update(serving, snapshot.version, {store: False, version: True}).describe() == {}
    unmarked = watch.update(serving, None, {store: False, version: False})
    assert not unmarked.stores  # answers unflagged: no store was ever seen
    assert set(unmarked.versions) == {snapshot.version} and unmarked.pointer is not None
    watch.update(serving, snapshot.version, {store: True, version: True})  # published again
    assert watch.update(serving, snapshot.version, {store: True, version: True}).describe() == {}
    gone = watch.update(serving, snapshot.version, {store: False, version: True})
    assert set(gone.stores) == {snapshot.manifest.feature_schema.fingerprint}
    assert not gone.versions and gone.pointer is None
    later = watch.update(serving, snapshot.version, {store: False, version: True})
    assert later.stores == gone.stores  # still lost, since the first poll that found it gone
