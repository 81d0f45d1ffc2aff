"""SIGTERM: /readyz fails at once while requests are still answered for the drain, then the
listener closes, a request already in flight finishes with its answer, and the process exits 0."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson

from tests.conftest import start_service

NO_REDIS = "redis://127.0.0.1:1/0"
DRAIN_SECONDS = 1.5
UPLOAD_SECONDS = 4.0  # the in-flight request: its body trickles in across the whole shutdown
EXIT_TIMEOUT = 30.0


def trickle(body: bytes, pieces: int) -> Iterator[bytes]:
    size = -(-len(body) // pieces)
    for start in range(0, len(body), size):
        yield body[start : start + size]
        time.sleep(UPLOAD_SECONDS / pieces)


def test_sigterm_drains_then_finishes_in_flight_requests(fit_bundle, tiny_data, tmp_path: Path):
    service = start_service(
        {
            "PRERANK_REDIS_URL": NO_REDIS,
            "PRERANK_BUNDLE_DIR": str(fit_bundle.path),
            "PRERANK_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
        },
        tmp_path / "log",
    )
    candidates = tiny_data.catalogue[:50].tolist()
    body = orjson.dumps({"user_id": 1, "candidates": candidates})
    in_flight: list[httpx.Response] = []

    def slow_request() -> None:
        in_flight.append(
            httpx.post(
                f"{service.url}/prerank",
                content=trickle(body, pieces=20),
                headers={"content-type": "application/json", "x-prerank-deadline-ms": "60000"},
                timeout=60,
            )
        )

    thread = threading.Thread(target=slow_request)
    try:
        thread.start()
        time.sleep(0.5)
        service.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        ready = httpx.get(f"{service.url}/readyz")
        during_drain = httpx.post(
            f"{service.url}/prerank", json={"user_id": 2, "candidates": candidates}
        )
        closed_after = None
        started = time.monotonic()
        while time.monotonic() - started < EXIT_TIMEOUT:
            try:
                httpx.get(f"{service.url}/healthz", timeout=1)
            except httpx.TransportError:
                closed_after = time.monotonic() - started + 0.2
                break
            time.sleep(0.05)
        thread.join(timeout=EXIT_TIMEOUT)
        exit_code = service.process.wait(timeout=EXIT_TIMEOUT)
    finally:
        service.stop()
    assert ready.status_code == 503 and "shutting down" in ready.json()["reason"]
    assert during_drain.status_code == 200 and len(during_drain.json()["items"]) == 50
    assert closed_after is not None and closed_after >= DRAIN_SECONDS - 0.3, closed_after
    assert [r.status_code for r in in_flight] == [200], service.log()
    assert len(in_flight[0].json()["items"]) == 50  # answered after the listener closed
    assert exit_code == 0, service.log()
