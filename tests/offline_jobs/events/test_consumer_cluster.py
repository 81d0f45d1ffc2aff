"""The consumer on a private 3-primary Redis Cluster: records on every primary, the stream and its
dead letters each one key of its own slot, one-key scripts and split pipelines only; the records
end as the in-order replay, a claimed malformed entry is dead-lettered once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from offline_jobs.data.dataset import InteractionData
from offline_jobs.events.consumer import EventConsumer
from offline_jobs.events.stores import store_format
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_client import LazyClusterClient
from tests.conftest import Bundle, PrivateCluster, publish_test_bundle
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

USERS = 30


@pytest.fixture
def keys() -> RedisKeys:
    return RedisKeys(f"cluster-events-{uuid.uuid4().hex[:8]}:")


@pytest.fixture
def client(redis_cluster: PrivateCluster, keys: RedisKeys) -> Iterator[LazyClusterClient]:
    client = event_settings(redis_cluster.url, keys, redis_cluster=True).connect_redis()
    assert isinstance(client, LazyClusterClient)
    yield client
    written = list(client.scan_iter(match=f"{keys.prefix}*", count=1000))
    if written:
        client.delete(*written)
    client.close()


def test_the_consumer_applies_events_on_a_cluster(
    redis_cluster: PrivateCluster,
    client: LazyClusterClient,
    keys: RedisKeys,
    fit_bundle: Bundle,
    tiny_data: InteractionData,
) -> None:
    publish_test_bundle(client, keys, fit_bundle.path, users=tiny_data)
    events = [{"user": 1 + n % USERS, "item": 1 + (7 * n) % 300} for n in range(300)]
    add_events(client, keys, [*events, {"user": 4}])  # the last one has no item
    settings = event_settings(redis_cluster.url, keys, redis_cluster=True)
    consumer = EventConsumer(settings.redis_client(), settings)
    run_until_done(consumer, client)
    consumer.handle(client.xrange(keys.events), claimed=True)  # a claim of everything again

    store = store_format(fit_bundle.manifest)
    expected = expected_records(
        published_record(tiny_data), stream_events(client, keys, store), store.max_history
    )
    assert len(expected) == USERS
    for user, record in expected.items():
        assert served_part(stored_record(client, keys, store.store, user)) == record, user
    assert len(client.xrange(keys.events_dead)) == 1
    slots = {client.cluster.keyslot(key) for key in (keys.events, keys.events_dead)}
    assert len(slots) == 2  # two keys, two slots: nothing needed them together
