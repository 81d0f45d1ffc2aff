"""Shared by the event tests: a published tiny FIT under a prefix of the test's own, events added
to its stream, a consumer run until the group has applied everything, and the reference records."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import redis

from offline_jobs.data.dataset import InteractionData
from offline_jobs.events.consumer import EventConsumer
from offline_jobs.events.entries import Event, StoreFormat, parse_event
from offline_jobs.events.settings import EventSettings
from prerank_contract.keys import RedisKeys
from tests.conftest import REPO_ROOT, wait_for
from tests.offline_jobs.events.replay import replay

MAX_ID_LENGTH = EventSettings.model_fields["events_max_id_length"].default


def event_settings(redis_url: str, keys: RedisKeys, **overrides: Any) -> EventSettings:
    """A consumer's settings for tests: quick claims and polls, no metrics port."""
    defaults: dict[str, Any] = {
        "redis_url": redis_url,
        "redis_key_prefix": keys.prefix,
        "events_metrics_port": 0,
        "events_block_ms": 100,
        "events_pointer_poll_seconds": 0.2,
        "events_stats_interval_seconds": 0.2,
        "events_claim_interval_seconds": 0.5,
        "events_claim_idle_seconds": 1.0,
        "events_backoff_seconds": 0.05,
        "events_backoff_max_seconds": 0.5,
    }
    return EventSettings(**(defaults | overrides))


def add_events(client: redis.Redis, keys: RedisKeys, events: Sequence[Mapping[str, Any]]) -> list:
    """XADD each event (fields as given), pipelined; the entry ids."""
    pipe = client.pipeline(transaction=False)
    for fields in events:
        pipe.xadd(keys.events, {k: str(v) for k, v in fields.items()})
    return [entry.decode() for entry in pipe.execute()]


def group_done(client: redis.Redis, keys: RedisKeys, group: str) -> bool:
    """Every entry delivered to `group` and acknowledged."""
    for info in client.xinfo_groups(keys.events):
        if info["name"].decode() == group:
            return info["lag"] == 0 and info["pending"] == 0
    return False


def run_until_done(consumer: EventConsumer, client: redis.Redis) -> None:
    """Run `consumer` in a thread until its group has applied the whole stream, then stop it."""
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: group_done(client, consumer.keys, consumer.settings.events_group),
            "the consumer group to apply every entry",
        )
    finally:
        consumer.stop.set()
        thread.join(timeout=10)


def stream_events(client: redis.Redis, keys: RedisKeys, store: StoreFormat) -> list[Event]:
    """Every applicable entry of the stream, as events of `store` (the malformed left out)."""
    events = []
    for entry_id, fields in client.xrange(keys.events):
        try:
            events.append(parse_event(entry_id, fields, store, MAX_ID_LENGTH))
        except ValueError:
            continue
    return events


def expected_records(
    published: Callable[[Any], dict[str, Any] | None], events: Sequence[Event], max_history: int
) -> dict[Any, dict[str, Any]]:
    """user -> the in-order replay of its events over its published record (`published(user)`)."""
    by_user: dict[Any, list[Event]] = {}
    for event in events:
        by_user.setdefault(event.user, []).append(event)
    return {user: replay(published(user), evs, max_history) for user, evs in by_user.items()}


def stored_record(client: redis.Redis, keys: RedisKeys, store: str, user: Any) -> dict | None:
    raw = client.get(keys.user(store, user))
    return None if raw is None else orjson.loads(raw)


def published_record(data: InteractionData) -> Callable[[Any], dict[str, Any] | None]:
    """user index -> its record as publish wrote it (None past the known users)."""
    return lambda user: data.user_record(user) if 1 <= user <= data.num_users else None


def served_part(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of a record the service reads."""
    if record is None:
        return None
    return {"features": record["features"], "history": record["history"]}


# A consumer process of the tests: small batches, claims after 1 s idle, quick polls and backoff.
CONSUMER_TEST_ENV = {
    "PRERANK_EVENTS_METRICS_PORT": "0",
    "PRERANK_EVENTS_BATCH_SIZE": "50",
    "PRERANK_EVENTS_BLOCK_MS": "100",
    "PRERANK_EVENTS_CLAIM_IDLE_SECONDS": "1",
    "PRERANK_EVENTS_CLAIM_INTERVAL_SECONDS": "0.5",
    "PRERANK_EVENTS_POINTER_POLL_SECONDS": "0.2",
    "PRERANK_EVENTS_STATS_INTERVAL_SECONDS": "0.2",
    "PRERANK_EVENTS_BACKOFF_SECONDS": "0.05",
    "PRERANK_EVENTS_BACKOFF_MAX_SECONDS": "0.5",
}


def start_consumer(
    redis_url: str, keys: RedisKeys, name: str, log_path: Path, **env: str
) -> subprocess.Popen[bytes]:
    """`python -m offline_jobs.events` as its own process, named `name` in its group."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PRERANK_")}
    environment |= CONSUMER_TEST_ENV | env
    environment |= {
        "PRERANK_REDIS_URL": redis_url,
        "PRERANK_REDIS_KEY_PREFIX": keys.prefix,
        "PRERANK_EVENTS_CONSUMER": name,
    }
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "offline_jobs.events"],
            cwd=REPO_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_consumer(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


def produce(
    client: redis.Redis,
    keys: RedisKeys,
    events: Sequence[Mapping[str, Any]],
    chunk: int,
    pause_seconds: float,
) -> list[str]:
    """XADD `events` in chunks of `chunk`, `pause_seconds` apart: a steady stream. The ids."""
    ids: list[str] = []
    for start in range(0, len(events), chunk):
        ids += add_events(client, keys, events[start : start + chunk])
        time.sleep(pause_seconds)
    return ids
