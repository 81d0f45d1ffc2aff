"""Redis restarted mid-stream (a private redis-server with AOF, stopped and started on the same
port and files): the consumer process backs off, stays alive, resumes, and the records it leaves
are still exactly the in-order replay of every event."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from offline_jobs.data.dataset import InteractionData
from offline_jobs.events.stores import store_format
from prerank_contract.keys import RedisKeys
from tests.conftest import Bundle, PrivateRedis, publish_test_bundle, wait_for
from tests.offline_jobs.events.streams import (
    expected_records,
    group_done,
    produce,
    published_record,
    served_part,
    start_consumer,
    stop_consumer,
    stored_record,
    stream_events,
)

KEYS = RedisKeys("restart:")
GROUP = "feature-store"
USERS = 30
EVENTS_BEFORE, EVENTS_AFTER = 1500, 500
CHUNK, PAUSE_SECONDS = 100, 0.05
DOWN_SECONDS = 1.5  # several failed tries at the test's backoff (0.05 s doubling to 0.5 s)


def event(n: int) -> dict[str, object]:
    return {"user": 1 + (11 * n) % USERS, "item": 1 + (17 * n) % 300, "label": int(n % 5 != 0)}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = PrivateRedis(folder, appendonly=True)
    yield server
    server.stop()


def test_the_consumer_backs_off_through_a_redis_restart_and_stays_exact(
    server: PrivateRedis, fit_bundle: Bundle, tiny_data: InteractionData, tmp_path: Path
) -> None:
    client = server.start()
    publish_test_bundle(client, KEYS, fit_bundle.path, users=tiny_data)
    log_path = tmp_path / "consumer.log"
    consumer = start_consumer(server.url, KEYS, "steady", log_path)
    try:
        produce(client, KEYS, [event(n) for n in range(EVENTS_BEFORE)], CHUNK, PAUSE_SECONDS)
        client.close()
        server.stop()  # while the consumer still works through the stream
        time.sleep(DOWN_SECONDS)
        client = server.start()
        after = [event(n) for n in range(EVENTS_BEFORE, EVENTS_BEFORE + EVENTS_AFTER)]
        produce(client, KEYS, after, CHUNK, PAUSE_SECONDS)
        wait_for(lambda: group_done(client, KEYS, GROUP), "every entry applied after the restart")
        assert consumer.poll() is None, log_path.read_text()
    finally:
        stop_consumer(consumer)
    log = log_path.read_text()
    assert "trying again" in log and "Redis answers again" in log, log

    store = store_format(fit_bundle.manifest)
    events = stream_events(client, KEYS, store)
    assert len(events) == EVENTS_BEFORE + EVENTS_AFTER  # the AOF kept every entry
    expected = expected_records(published_record(tiny_data), events, store.max_history)
    assert len(expected) == USERS
    for user, record in expected.items():
        assert served_part(stored_record(client, KEYS, store.store, user)) == record, user
    client.close()
