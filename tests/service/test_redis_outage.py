"""Redis cut mid-load: a real redis-server on its own port is stopped while requests flow, then
started again on the same port and data. The service keeps answering from its in-memory snapshot
(no 5xx), says `degraded` while the feature store is unreadable, and recovers when Redis returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from prerank_contract.keys import RedisKeys
from tests.conftest import PrivateRedis, publish_test_bundle, start_service

KEYS = RedisKeys("outage:")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, appendonly=True)
    yield server
    server.stop()


def test_cutting_redis_mid_load_degrades_without_errors_and_recovers(
    server: PrivateRedis, fit_bundle, tiny_data, tmp_path: Path
) -> None:
    client = server.start()
    publish_test_bundle(client, KEYS, fit_bundle.path, users=tiny_data)
    client.close()
    service = start_service(
        {
            "PRERANK_REDIS_URL": server.url,
            "PRERANK_REDIS_KEY_PREFIX": KEYS.prefix,
            "PRERANK_POLL_INTERVAL_SECONDS": "0.1",
            "PRERANK_REDIS_TIMEOUT_SECONDS": "0.5",
            # probes at most 0.5 s apart: recovered well within the 1.5 s allowed below
            "PRERANK_FEATURE_STORE_BACKOFF_MAX_SECONDS": "0.5",
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
                sent_in = phase[0]
                response = http.post(f"{service.url}/prerank", json=body)
                payload = response.json() if response.status_code == 200 else {}
                # an answer whose request straddled a phase change belongs to neither phase
                answered_in = sent_in if phase[0] == sent_in else "transition"
                answers.append((answered_in, response.status_code, payload))

    thread = threading.Thread(target=load)
    try:
        thread.start()
        time.sleep(1.0)
        phase[0] = "outage"
        server.stop()
        time.sleep(2.0)
        ready_in_outage = httpx.get(f"{service.url}/readyz").json()
        phase[0] = "restarting"
        server.start().close()
        time.sleep(1.5)  # reconnect, the next feature-store reads succeed
        phase[0] = "after"
        time.sleep(1.0)
        ready_after = httpx.get(f"{service.url}/readyz").json()
    finally:
        stop.set()
        thread.join()
        log = service.log()
        service.stop()
    assert [a for a in answers if a[1] != 200] == [], log
    by_phase = {p: [a[2] for a in answers if a[0] == p] for p in ("before", "outage", "after")}
    assert all(len(v) >= 5 for v in by_phase.values()), {p: len(v) for p, v in by_phase.items()}
    assert not any(p["degraded"] for p in by_phase["before"]), by_phase["before"]
    outage = by_phase["outage"]
    landed = outage[len(outage) // 4 :]  # once the cut has landed
    assert all(p["degraded"] and p["degraded_reasons"] == ["feature_store"] for p in landed)
    assert all(len(p["items"]) == 50 for p in outage)  # scored from the in-memory snapshot
    assert not any(p["degraded"] for p in by_phase["after"]), by_phase["after"]
    assert all(p["user_source"] == "feature_store" for p in by_phase["after"])
    # readiness stays true (answers flow) and says what is degraded, then clears
    assert ready_in_outage["ready"] is True
    assert "Redis unreadable" in ready_in_outage["degraded"]["feature_store"]
    assert "not readable" in ready_in_outage["degraded"]["model_updates"]
    assert ready_after["degraded"] == {}
