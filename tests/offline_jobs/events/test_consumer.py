"""The consumer against the real Redis: events applied to the published store as the in-order
replay, malformed entries dead-lettered once with their reason, everything acknowledged, and the
stores re-resolved when the active pointer moves."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from offline_jobs.data.dataset import InteractionData
from offline_jobs.events.consumer import EventConsumer
from offline_jobs.events.metrics import EventMetrics
from offline_jobs.events.stores import store_format
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import MANIFEST_FILE, Manifest
from prerank_contract.traffic import TrafficSplit
from tests.conftest import REDIS_URL, Bundle, clone_bundle, delete_prefix, publish_test_bundle
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

NEW_USER = 10_000  # past the tiny world's 120 users: unknown at publish time
LONGER_HISTORY = 12  # the tiny world keeps 8


@pytest.fixture
def keys(redis_client: redis.Redis, key_prefix: str) -> Iterator[RedisKeys]:
    keys = RedisKeys(f"{key_prefix}events-{uuid.uuid4().hex[:6]}:")
    yield keys
    delete_prefix(redis_client, keys.prefix)


@pytest.fixture
def published(redis_client, keys: RedisKeys, fit_bundle: Bundle, tiny_data) -> Bundle:
    publish_test_bundle(redis_client, keys, fit_bundle.path, users=tiny_data)
    return fit_bundle


def metric(metrics: EventMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def test_events_are_applied_as_the_in_order_replay_and_bad_ones_dead_lettered(
    redis_client: redis.Redis, keys: RedisKeys, published: Bundle, tiny_data: InteractionData
) -> None:
    store = store_format(published.manifest)
    events = [
        {"user": 1 + n % 7, "item": 1 + (13 * n) % 300, "label": n % 3 and 1} for n in range(60)
    ]
    events += [{"user": 2, "item": 5, "f.user_id": 3}, {"user": NEW_USER, "item": 42}]
    malformed = [
        {"user": 3, "item": "B7"},  # this store's item ids are integers
        {"item": 9},
        {"user": 4, "item": 9, "label": "yes"},
    ]
    ids = add_events(redis_client, keys, events[:30] + malformed + events[30:])
    metrics = EventMetrics()
    consumer = EventConsumer(
        redis.Redis.from_url(REDIS_URL),
        event_settings(REDIS_URL, keys, events_batch_size=16),
        metrics,
    )
    run_until_done(consumer, redis_client)

    expected = expected_records(
        published_record(tiny_data), stream_events(redis_client, keys, store), store.max_history
    )
    assert NEW_USER in expected and len(expected) == 8
    for user, record in expected.items():
        assert served_part(stored_record(redis_client, keys, store.store, user)) == record
    dead = redis_client.xrange(keys.events_dead)
    assert [fields[b"entry"].decode() for _, fields in dead] == ids[30:33]
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert reasons[0].startswith("item: 'B7' is not an integer") and reasons[1] == "user: missing"
    assert metric(metrics, "prerank_events_applied_total") == len(events)
    assert metric(metrics, "prerank_events_dead_lettered_total") == len(malformed)


def test_a_redelivered_batch_changes_nothing_and_counts_as_duplicates(
    redis_client: redis.Redis, keys: RedisKeys, published: Bundle
) -> None:
    add_events(redis_client, keys, [{"user": 5, "item": n} for n in range(1, 11)] + [{"user": 5}])
    settings = event_settings(REDIS_URL, keys)
    first = EventConsumer(redis.Redis.from_url(REDIS_URL), settings)
    run_until_done(first, redis_client)
    store = store_format(published.manifest).store
    before = redis_client.get(keys.user(store, 5))
    entries = redis_client.xrange(keys.events)
    metrics = EventMetrics()
    again = EventConsumer(redis.Redis.from_url(REDIS_URL), settings, metrics)
    again.step()  # resolves the stores
    again.handle(entries, claimed=True)  # as a consumer that claims what a dead one held
    assert redis_client.get(keys.user(store, 5)) == before
    assert metric(metrics, "prerank_events_duplicates_total") == 10
    assert (
        len(redis_client.xrange(keys.events_dead)) == 1
    )  # the claimed dead letter is not added twice


def test_nothing_is_applied_while_no_version_is_active(
    redis_client: redis.Redis, keys: RedisKeys
) -> None:
    add_events(redis_client, keys, [{"user": 1, "item": 2}])
    consumer = EventConsumer(redis.Redis.from_url(REDIS_URL), event_settings(REDIS_URL, keys))
    assert consumer.step() == 0
    assert consumer.stores == []
    assert redis_client.xinfo_groups(keys.events)[0]["lag"] == 1


def test_the_stores_written_follow_the_active_pointer_and_the_split(
    redis_client: redis.Redis, keys: RedisKeys, published: Bundle, tmp_path: Path
) -> None:
    """A second version reading another store (a longer history: another schema): written
    beside the active one's while it is the split's treatment, alone once it is active."""

    def longer_history(manifest: dict) -> None:
        manifest["feature_schema"]["max_history"] = LONGER_HISTORY

    other = clone_bundle(published.path, tmp_path, "v-longer", edit=longer_history)
    publish_test_bundle(redis_client, keys, other, activate=False)
    first = store_format(published.manifest).store
    second = store_format(Manifest.model_validate_json((other / MANIFEST_FILE).read_text()))
    assert second.store != first and second.max_history == LONGER_HISTORY
    split = TrafficSplit(version="v-longer", share=0.5, salt="")
    redis_client.set(keys.split, split.model_dump_json())
    consumer = EventConsumer(redis.Redis.from_url(REDIS_URL), event_settings(REDIS_URL, keys))
    add_events(redis_client, keys, [{"user": 6, "item": 11}])
    run_until_done(consumer, redis_client)
    assert {s.store for s in consumer.stores} == {first, second.store}
    assert stored_record(redis_client, keys, second.store, 6)["history"] == [11]
    assert stored_record(redis_client, keys, first, 6)["history"][-1] == 11

    redis_client.delete(keys.split)
    redis_client.set(keys.active, "v-longer")
    add_events(redis_client, keys, [{"user": 6, "item": 12}])
    consumer = EventConsumer(redis.Redis.from_url(REDIS_URL), event_settings(REDIS_URL, keys))
    run_until_done(consumer, redis_client)
    assert [s.store for s in consumer.stores] == [second.store]
    assert stored_record(redis_client, keys, second.store, 6)["history"] == [11, 12]
    assert stored_record(redis_client, keys, first, 6)["history"][-1] == 11
