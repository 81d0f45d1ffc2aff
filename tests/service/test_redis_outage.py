"""Redis cut mid-load: a real redis-server on its own port is stopped while requests flow, then
started again on the same port and data. The service keeps answering from its in-memory snapshot
(no 5xx), says `degraded` while the feature store is unreadable, and recovers when Redis returns."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from offline_jobs.publish import publish_bundle, publish_user_features
from prerank_contract.keys import RedisKeys
from tests.conftest import TEST_GATE, free_port, start_service, stop_service

KEYS = RedisKeys("outage:")
READY_TIMEOUT = 20.0


class RestartableRedis:
    """redis-server with an append-only file in `folder`: what it held survives a restart."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> redis.Redis:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "yes", "--dir", str(self.folder)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                client.ping()
                return client
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RestartableRedis]:
    server = RestartableRedis(tmp_path)
    yield server
    server.stop()


def test_cutting_redis_mid_load_degrades_without_errors_and_recovers(
    server: RestartableRedis, fit_bundle, tiny_data, tmp_path: Path
) -> None:
    client = server.start()
    publish_user_features(client, KEYS, tiny_data, 100, progress=False)
    publish_bundle(
        client,
        KEYS,
        fit_bundle.path,
        chunk_bytes=4096,
        keep_versions=3,
        gate=TEST_GATE,
        progress=False,
    )
    client.close()
    service = start_service(
        {
            "PRERANK_REDIS_URL": server.url,
            "PRERANK_REDIS_KEY_PREFIX": KEYS.prefix,
            "PRERANK_POLL_INTERVAL_SECONDS": "0.1",
            "PRERANK_REDIS_TIMEOUT_SECONDS": "0.5",
        },
        tmp_path / "service.log",
    )
    body = {"user_id": int(tiny_data.user_ids[0]), "candidates": tiny_data.catalogue[:50].tolist()}
    phase = ["before"]
    answers: list[tuple[str, int, dict]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                current = phase[0]
                response = http.post(f"{service.url}/prerank", json=body)
                payload = response.json() if response.status_code == 200 else {}
                answers.append((current, response.status_code, payload))

    thread = threading.Thread(target=load)
    try:
        thread.start()
        time.sleep(1.0)
        phase[0] = "outage"
        server.stop()
        time.sleep(2.0)
        phase[0] = "restarting"
        server.start().close()
        time.sleep(1.5)  # reconnect, the next feature-store reads succeed
        phase[0] = "after"
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join()
        log = service.log()
        stop_service(service)
    assert [a for a in answers if a[1] != 200] == [], log
    by_phase = {p: [a[2] for a in answers if a[0] == p] for p in ("before", "outage", "after")}
    assert all(len(v) >= 5 for v in by_phase.values()), {p: len(v) for p, v in by_phase.items()}
    assert not any(p["degraded"] for p in by_phase["before"])
    outage = by_phase["outage"]
    assert all(p["degraded"] for p in outage[len(outage) // 4 :])  # once the cut has landed
    assert all(len(p["items"]) == 50 for p in outage)  # scored from the in-memory snapshot
    assert not any(p["degraded"] for p in by_phase["after"])
    assert all(p["user_source"] == "feature_store" for p in by_phase["after"])
