"""A consumer killed with SIGKILL mid-batch under load: another claims what it held, and at the end
every user's record is the in-order replay of all its events (nothing lost, nothing applied
twice), and the dead-letter stream holds exactly the malformed entries sent, each once."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from offline_jobs.data.dataset import InteractionData
from offline_jobs.events.stores import store_format
from prerank_contract.keys import RedisKeys
from tests.conftest import REDIS_URL, Bundle, delete_prefix, publish_test_bundle, wait_for
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

GROUP = "feature-store"  # the consumers' default group
KNOWN_USERS = 40
NEW_USERS = (500, 501, 502, 503, 504)  # unknown at publish time
EVENTS = 4000
CHUNK, PAUSE_SECONDS = 100, 0.05  # about 2,000 events/s for 2 s
MALFORMED_EVERY = 150


def is_malformed(n: int) -> bool:
    return n % MALFORMED_EVERY == MALFORMED_EVERY - 1


def malformed(n: int) -> dict[str, object]:
    """One of five ways an entry cannot be applied to a store of integer ids."""
    return [
        {"user": 1, "item": f"x{n}"},
        {"item": 3},
        {"user": 2, "item": 3, "label": 2},
        {"user": 2, "item": 3, "f.shoe_size": 44},
        {"user": "9" * 300, "item": 3},
    ][n % 5]


def event(n: int) -> dict[str, object]:
    users = KNOWN_USERS + len(NEW_USERS)
    slot = (7 * n) % users
    user = slot + 1 if slot < KNOWN_USERS else NEW_USERS[slot - KNOWN_USERS]
    fields: dict[str, object] = {"user": user, "item": 1 + (31 * n) % 300, "label": int(n % 4 != 0)}
    if n % 9 == 0:
        fields["f.region"] = n % 11
    return fields


@pytest.fixture
def keys(redis_client: redis.Redis, key_prefix: str) -> Iterator[RedisKeys]:
    keys = RedisKeys(f"{key_prefix}crash-{uuid.uuid4().hex[:6]}:")
    yield keys
    delete_prefix(redis_client, keys.prefix)


def pending_of(client: redis.Redis, keys: RedisKeys, consumer: str) -> int:
    """Entries delivered to `consumer` and not acknowledged (0 before the group exists)."""
    try:
        return len(client.xpending_range(keys.events, GROUP, "-", "+", 1, consumername=consumer))
    except redis.ResponseError:  # NOGROUP: no consumer has started yet
        return 0


def test_a_consumer_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    redis_client: redis.Redis,
    keys: RedisKeys,
    fit_bundle: Bundle,
    tiny_data: InteractionData,
    tmp_path: Path,
) -> None:
    publish_test_bundle(redis_client, keys, fit_bundle.path, users=tiny_data)
    sent = [malformed(n) if is_malformed(n) else event(n) for n in range(EVENTS)]
    doomed = start_consumer(REDIS_URL, keys, "doomed", tmp_path / "doomed.log")
    survivor = start_consumer(REDIS_URL, keys, "survivor", tmp_path / "survivor.log")
    ids: list[str] = []
    producer = threading.Thread(
        target=lambda: ids.extend(produce(redis_client, keys, sent, CHUNK, PAUSE_SECONDS))
    )
    try:
        producer.start()
        # killed while it holds delivered, unacknowledged entries: in the middle of a batch
        wait_for(lambda: pending_of(redis_client, keys, "doomed") > 0, "the doomed one's batch")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
        producer.join()
        wait_for(lambda: group_done(redis_client, keys, GROUP), "every entry applied and acked")
    finally:
        stop_consumer(doomed)
        stop_consumer(survivor)
    survivor_log = (tmp_path / "survivor.log").read_text()
    assert "claimed" in survivor_log, survivor_log

    store = store_format(fit_bundle.manifest)
    events = stream_events(redis_client, keys, store)
    assert len(events) == EVENTS - EVENTS // MALFORMED_EVERY
    expected = expected_records(published_record(tiny_data), events, store.max_history)
    assert set(NEW_USERS) <= set(expected)
    for user, record in expected.items():
        assert served_part(stored_record(redis_client, keys, store.store, user)) == record, user
    dead = [fields[b"entry"].decode() for _, fields in redis_client.xrange(keys.events_dead)]
    bad = [entry for n, entry in enumerate(ids) if is_malformed(n)]
    assert sorted(dead) == sorted(bad) and len(bad) == EVENTS // MALFORMED_EVERY
