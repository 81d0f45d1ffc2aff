"""Bounded concurrency: beyond PRERANK_MAX_IN_FLIGHT a fast 503 with Retry-After, never a queue
that grows, and the bound is released after every request."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from research.service_process import ServiceProcess
from tests.conftest import start_service

CLIENTS, REQUESTS_EACH = 24, 6


@pytest.fixture(scope="module")
def bounded(published_fit, key_prefix: str, tmp_path_factory) -> Iterator[ServiceProcess]:
    service = start_service(
        {
            "PRERANK_REDIS_KEY_PREFIX": key_prefix,
            "PRERANK_MAX_IN_FLIGHT": "1",
            "PRERANK_REQUEST_THREADS": "1",
            "PRERANK_RETRY_AFTER_SECONDS": "2",
        },
        tmp_path_factory.mktemp("overload") / "service.log",
    )
    yield service
    service.stop()


def test_beyond_the_bound_requests_get_503_with_retry_after(bounded, tiny_data) -> None:
    body = {
        "user_id": 1,
        "candidates": tiny_data.catalogue.tolist() + list(range(10**6, 10**6 + 5000)),
    }

    def client(_: int) -> list[httpx.Response]:
        with httpx.Client(timeout=30) as http:
            return [http.post(f"{bounded.url}/prerank", json=body) for _ in range(REQUESTS_EACH)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        responses = [r for batch in pool.map(client, range(CLIENTS)) for r in batch]
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.headers["retry-after"] == "2"
            assert "PRERANK_MAX_IN_FLIGHT" in response.json()["detail"]
    # the bound is released: a lone request is answered, nothing is left in flight
    assert httpx.post(f"{bounded.url}/prerank", json=body, timeout=30).status_code == 200
    assert "prerank_in_flight 0.0" in httpx.get(f"{bounded.url}/metrics").text
