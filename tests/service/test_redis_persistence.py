"""A Redis with persistence survives a crash: a private redis-server with an append-only file
(fsynced once a second, as docker-compose.yml and `make stack` run it) is killed with SIGKILL and
started again on the same port and folder; the service following it answers from the feature
store again, not degraded, with the same version and scores (nothing was lost)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from prerank_contract.keys import RedisKeys
from prerank_contract.redis_store import active_version
from tests.conftest import PrivateRedis, publish_test_bundle, start_service

KEYS = RedisKeys("persist:")
# A SIGKILL loses what Redis has not yet written to its append-only file. With `appendfsync
# everysec` it writes every event-loop turn and fsyncs once a second, postponing a write by up to
# 2 s only while an earlier fsync is still running; 3 s after the last write it is on disk.
AOF_WRITTEN_AFTER_SECONDS = 3.0
# After the restart: Redis loads its file, the service's next probe of the feature store comes
# within the backoff (capped at 0.5 s below) and its follower polls every 0.2 s; the rest is
# slack for a loaded 2-core machine.
RECOVERY_TIMEOUT_SECONDS = 15.0
WAIT_POLL_SECONDS = 0.1
CANDIDATES = 50


def readiness(url: str) -> dict:
    payload: dict = httpx.get(f"{url}/readyz", timeout=10).json()
    return payload


def test_a_redis_with_aof_killed_and_restarted_keeps_what_the_service_reads(
    fit_bundle, tiny_data, tmp_path: Path
) -> None:
    server = PrivateRedis(tmp_path, appendonly=True)
    client = server.start()
    service = None
    try:
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        result = publish_test_bundle(client, KEYS, fit_bundle.path, users=tiny_data)
        written_at = time.monotonic()
        service = start_service(
            {
                "PRERANK_REDIS_URL": server.url,
                "PRERANK_REDIS_KEY_PREFIX": KEYS.prefix,
                "PRERANK_POLL_INTERVAL_SECONDS": "0.2",
                "PRERANK_FEATURE_STORE_BACKOFF_MAX_SECONDS": "0.5",
            },
            tmp_path / "service.log",
        )
        body = {
            "user_id": int(tiny_data.user_ids[0]),
            "candidates": tiny_data.catalogue[:CANDIDATES].tolist(),
        }

        def answer() -> dict:
            response = httpx.post(f"{service.url}/prerank", json=body, timeout=30)
            assert response.status_code == 200, service.log()
            payload: dict = response.json()
            return payload

        before = answer()
        assert before["user_source"] == "feature_store" and not before["degraded"]
        assert before["model_version"] == result.version
        time.sleep(max(written_at + AOF_WRITTEN_AFTER_SECONDS - time.monotonic(), 0.0))

        client.close()
        server.processes[0].kill()  # SIGKILL: no shutdown, no final write
        server.processes[0].wait(timeout=10)
        assert answer()["degraded"]  # still answered, from memory, while Redis is down
        client = server.start()  # same port and folder: Redis loads its append-only file
        assert active_version(client, KEYS) == result.version

        deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
        after = answer()
        while after["degraded"] or after["user_source"] != "feature_store":
            assert time.monotonic() < deadline, (after, service.log())
            time.sleep(WAIT_POLL_SECONDS)
            after = answer()
        assert after["model_version"] == result.version
        assert after["items"] == before["items"]  # same version, same stored features
        ready = readiness(service.url)
        while ready["degraded"]:  # the follower reads the pointers again at its next poll
            assert time.monotonic() < deadline, (ready, service.log())
            time.sleep(WAIT_POLL_SECONDS)
            ready = readiness(service.url)
        assert ready["version"] == result.version
    finally:
        if service is not None:
            service.stop()
        client.close()
        server.stop()
