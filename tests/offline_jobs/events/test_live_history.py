"""Events reach the service within a second: a real uvicorn serving the tiny FIT from the real
Redis, a consumer applying the events stream, and /prerank for a user without features in the
request scored on the history the events made (the same scores as a request that carries it)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from offline_jobs.data.dataset import InteractionData
from offline_jobs.events.consumer import EventConsumer
from prerank_contract.keys import RedisKeys
from research.service_process import ServiceProcess
from tests.conftest import (
    PROBE_SECONDS,
    REDIS_URL,
    Bundle,
    delete_prefix,
    publish_test_bundle,
    start_service,
)
from tests.offline_jobs.events.streams import add_events, event_settings

VISIBLE_WITHIN_SECONDS = 1.0  # the promise: an event shapes the next answer this soon
KNOWN_USER = 3
NEW_USER = 10_000  # not among the tiny world's 120 users
NEW_ITEMS = (10, 20, 30)
CANDIDATES = list(range(1, 101))


@pytest.fixture(scope="module")
def keys(redis_client: redis.Redis, key_prefix: str) -> Iterator[RedisKeys]:
    keys = RedisKeys(f"{key_prefix}live-{uuid.uuid4().hex[:6]}:")
    yield keys
    delete_prefix(redis_client, keys.prefix)


@pytest.fixture(scope="module")
def live(
    redis_client: redis.Redis,
    keys: RedisKeys,
    fit_bundle: Bundle,
    tiny_data: InteractionData,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    """The tiny FIT published under `keys`, served, and a consumer of its events stream."""
    publish_test_bundle(redis_client, keys, fit_bundle.path, users=tiny_data)
    service = start_service(
        {"PRERANK_REDIS_KEY_PREFIX": keys.prefix},
        Path(tmp_path_factory.mktemp("live")) / "service.log",
    )
    consumer = EventConsumer(redis.Redis.from_url(REDIS_URL), event_settings(REDIS_URL, keys))
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    yield service
    consumer.stop.set()
    thread.join(timeout=10)
    service.stop()


def prerank(service: ServiceProcess, body: dict) -> dict:
    answer = httpx.post(
        f"{service.url}/prerank", json={"candidates": CANDIDATES, **body}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    payload: dict = answer.json()
    return payload


def scores(payload: dict) -> dict[int, float]:
    return {item["item_id"]: item["score"] for item in payload["items"]}


def seconds_until(condition, what: str) -> float:
    """Seconds from now until `condition()` holds (polled); fails past a generous bound."""
    started = time.perf_counter()
    while time.perf_counter() - started < 10 * VISIBLE_WITHIN_SECONDS:
        if condition():
            return time.perf_counter() - started
        time.sleep(PROBE_SECONDS / 5)
    raise AssertionError(f"{what} never happened")


def test_new_events_shape_the_next_answers_within_a_second(
    live: ServiceProcess, redis_client: redis.Redis, keys: RedisKeys, tiny_data: InteractionData
) -> None:
    published = tiny_data.user_record(KNOWN_USER)
    history = [*published["history"], *NEW_ITEMS][-tiny_data.schema.max_history :]
    explicit = {"user_id": KNOWN_USER, "user_features": published["features"], "history": history}
    expected = scores(prerank(live, explicit))
    before = prerank(live, {"user_id": KNOWN_USER})
    assert before["user_source"] == "feature_store"
    assert scores(before) != expected  # the published history scores otherwise

    add_events(redis_client, keys, [{"user": KNOWN_USER, "item": i} for i in NEW_ITEMS])
    took = seconds_until(
        lambda: scores(prerank(live, {"user_id": KNOWN_USER})) == expected,
        "an answer scored on the new history",
    )
    assert took <= VISIBLE_WITHIN_SECONDS


def test_a_user_unknown_at_publish_time_is_known_after_its_first_event(
    live: ServiceProcess, redis_client: redis.Redis, keys: RedisKeys
) -> None:
    assert prerank(live, {"user_id": NEW_USER})["user_source"] == "cold_start"
    add_events(redis_client, keys, [{"user": NEW_USER, "item": NEW_ITEMS[0]}])
    took = seconds_until(
        lambda: prerank(live, {"user_id": NEW_USER})["user_source"] == "feature_store",
        "the new user read from the feature store",
    )
    assert took <= VISIBLE_WITHIN_SECONDS
    answer = prerank(live, {"user_id": NEW_USER})
    given = prerank(live, {"user_id": NEW_USER, "history": [NEW_ITEMS[0]]})
    assert scores(answer) == scores(given)
