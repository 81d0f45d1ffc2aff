"""The feature store's backoff against a real redis-server: after a failed read it skips Redis
(answering unavailable at once) until the backoff ends, doubles the backoff per failed probe, and
recovers on the first successful probe."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry, Gauge

from prerank_contract.keys import RedisKeys
from service.feature_store import FeatureStore, FeatureStoreUnavailableError
from tests.conftest import PrivateRedis

KEYS = RedisKeys("store:")
BACKOFF, BACKOFF_MAX = 0.4, 1.0
FINGERPRINT = "schema"


def store_for(server: PrivateRedis) -> tuple[FeatureStore, Gauge]:
    up = Gauge("up", "feature store up", registry=CollectorRegistry())
    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=0.2)
    return FeatureStore(client, KEYS, BACKOFF, BACKOFF_MAX, up), up


def gauge_value(gauge: Gauge) -> float:
    return gauge.collect()[0].samples[0].value


def test_skips_redis_during_the_backoff_then_recovers(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path)  # not started: its port refuses connections
    store, up = store_for(server)
    with pytest.raises(FeatureStoreUnavailableError, match="Connection"):
        store.get(FINGERPRINT, 1)
    assert store.outage is not None and store.outage.failures == 1
    assert gauge_value(up) == 0
    assert "Redis unreadable" in (store.describe() or "")
    client = server.start()
    try:
        client.set(KEYS.user(FINGERPRINT, 1), b'{"features": {}, "history": [7]}')
        # Redis answers now, but the store is in backoff: skipped, no read attempted
        with pytest.raises(FeatureStoreUnavailableError, match="in backoff"):
            store.get(FINGERPRINT, 1)
        time.sleep(BACKOFF)
        assert store.get(FINGERPRINT, 1) == {"features": {}, "history": [7]}
        assert store.outage is None and store.describe() is None
        assert gauge_value(up) == 1
    finally:
        server.stop()


def test_the_backoff_doubles_per_failed_probe_up_to_the_cap(tmp_path: Path) -> None:
    store, _ = store_for(PrivateRedis(tmp_path))
    waits = []
    for _ in range(4):
        with pytest.raises(FeatureStoreUnavailableError):
            store.get(FINGERPRINT, 1)
        assert store.outage is not None
        waits.append(store.outage.retry_at - time.monotonic())
        time.sleep(max(waits[-1], 0))
    assert waits == pytest.approx([0.4, 0.8, 1.0, 1.0], abs=0.05)
    assert store.outage.failures == 4
