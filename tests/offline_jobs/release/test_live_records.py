"""A feature store published over live records: what the event consumer wrote after the job read
its data survives the release, merged record by record while a consumer keeps writing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from offline_jobs.data.dataset import InteractionData
from offline_jobs.events.apply import apply_events, carry_events
from offline_jobs.events.consumer import EventConsumer
from offline_jobs.events.entries import Event
from offline_jobs.events.stores import store_format
from offline_jobs.release.publish import LiveEvents, publish_user_features
from prerank_contract.keys import RedisKeys
from tests.conftest import REDIS_URL, Bundle, delete_prefix, publish_test_bundle
from tests.offline_jobs.events.streams import (
    add_events,
    event_settings,
    expected_records,
    published_record,
    run_until_done,
    served_part,
    stored_record,
    stream_events,
)

CUT_MS = 2_000
NEW_USER = 10_000  # past the tiny world's users: only events know it
REPUBLISHES = 3


def event(ms: int, item: int, **features: object) -> Event:
    return Event(entry=(ms, 0), user=1, item=item, positive=True, ts_ms=ms, features=features)


def test_events_after_the_cut_are_carried_into_the_published_record() -> None:
    old = {"features": {"gender": "F"}, "history": [1, 2, 3]}
    before, after = event(1_000, 7, age=3), [event(5_000, 8), event(6_000, 9, gender="M")]
    live = apply_events(old, [before, *after], max_history=4).record
    published = {"features": {"gender": "F", "zip": "48"}, "history": [4, 5]}

    carried = carry_events(published, live, CUT_MS, max_history=4)

    assert carried is not None
    assert carried["history"] == [4, 5, 8, 9]  # item 7 came before the data was read
    assert carried["features"] == {"gender": "M", "zip": "48"}  # age: set before the cut
    again = apply_events(carried, after, max_history=4)  # a redelivery changes nothing
    assert again.record == carried and again.applied == 0
    assert carry_events(published, apply_events(old, [before], 4).record, CUT_MS, 4) is None
    assert carry_events(published, None, CUT_MS, 4) is None


def test_the_carried_history_keeps_the_latest_elements() -> None:
    live = apply_events(None, [event(5_000 + n, 100 + n) for n in range(3)], 4).record
    carried = carry_events({"features": {}, "history": [1, 2, 3]}, live, CUT_MS, 4)
    assert carried is not None and carried["history"] == [3, 100, 101, 102]


@pytest.fixture
def keys(redis_client: redis.Redis, key_prefix: str) -> Iterator[RedisKeys]:
    keys = RedisKeys(f"{key_prefix}live-{uuid.uuid4().hex[:6]}:")
    yield keys
    delete_prefix(redis_client, keys.prefix)


def test_a_release_during_a_stream_of_events_keeps_every_one(
    redis_client: redis.Redis, keys: RedisKeys, fit_bundle: Bundle, tiny_data: InteractionData
) -> None:
    publish_test_bundle(redis_client, keys, fit_bundle.path, users=tiny_data)
    store = store_format(fit_bundle.manifest)
    settings = event_settings(REDIS_URL, keys, events_batch_size=8)
    data_read_ms = time.time_ns() // 1_000_000 - 1  # the release's data predates every event
    events = [{"user": 1 + n % 9, "item": 1 + (7 * n) % 300} for n in range(400)]
    events += [{"user": 3, "item": 11, "f.user_id": 5}, {"user": NEW_USER, "item": 42}]
    add_events(redis_client, keys, events[::2])  # applied before the release starts
    run_until_done(EventConsumer(redis.Redis.from_url(REDIS_URL), settings), redis_client)
    consumer = EventConsumer(redis.Redis.from_url(REDIS_URL), settings)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    adding = threading.Thread(target=add_slowly, args=(redis_client, keys, events[1::2]))
    adding.start()
    try:
        for _ in range(REPUBLISHES):  # each over records the consumer is writing
            publish_user_features(
                redis.Redis.from_url(REDIS_URL),
                keys,
                tiny_data,
                batch_size=10,
                progress=False,
                live=LiveEvents(after_ms=data_read_ms, retries=20),
            )
    finally:
        adding.join()
        consumer.stop.set()
        thread.join(timeout=10)
    run_until_done(EventConsumer(redis.Redis.from_url(REDIS_URL), settings), redis_client)

    expected = expected_records(
        published_record(tiny_data), stream_events(redis_client, keys, store), store.max_history
    )
    assert NEW_USER in expected and len(expected) == 10
    for user, record in expected.items():
        assert served_part(stored_record(redis_client, keys, store.store, user)) == record, user
    untouched = tiny_data.num_users  # no event: written exactly as published
    assert stored_record(redis_client, keys, store.store, untouched) == tiny_data.user_record(
        untouched
    )


def add_slowly(client: redis.Redis, keys: RedisKeys, events: list[dict]) -> None:
    """XADD `events` in small groups, so the consumer writes while the publishes run."""
    group = 20
    for start in range(0, len(events), group):
        add_events(client, keys, events[start : start + group])
        time.sleep(0.01)
