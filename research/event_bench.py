"""``python -m research.event_bench`` (``make bench-events``): what one event consumer sustains,
and how soon an event is visible in its user's record.

Against the configured Redis (PRERANK_REDIS_URL), under a key prefix of its own deleted after.
`event_bench_users` users start with a record of `event_bench_history` items, as publish writes
them. One consumer (`offline_jobs.events`, its own process, default batch settings) then:
1. drains a backlog of `event_bench_backlog` events: sustained events per second;
2. follows a producer adding `event_bench_rate` events/s for `event_bench_seconds`, while a prober
   adds one event at a time for users of its own and polls the record until that entry is in its
   history: XADD -> visible, p50 and p99 against the goal.
Writes docs/benchmarks/events.md and prints the verdict.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
from pydantic import Field

from offline_jobs.events.consumer import EventConsumer
from offline_jobs.events.entries import StoreFormat
from offline_jobs.events.settings import EventSettings
from prerank_contract.keys import RedisKeys
from prerank_contract.settings import CommonSettings, configure_logging, load_settings
from research.machine import cpu_model
from research.settings import REPO_ROOT

log = logging.getLogger("research.event_bench")

TEMPLATE = Path(__file__).with_name("event_bench.md.j2")
STORE = "event-bench"
GROUP = "event-bench"
WRITE_BATCH = 1000  # records or events per pipelined round trip while preparing
MS = 1000.0


class EventBenchSettings(CommonSettings):
    """Sizes, rates and the goal of the event consumer benchmark."""

    event_bench_users: int = Field(default=10_000, ge=1, description="users of the load")
    event_bench_items: int = Field(default=100_000, ge=1, description="item ids drawn from")
    event_bench_history: int = Field(default=20, ge=1, description="history kept per record")
    event_bench_backlog: int = Field(
        default=50_000, ge=1, description="events of the backlog drained for throughput"
    )
    event_bench_rate: float = Field(default=2000.0, gt=0, description="events/s of the load")
    event_bench_seconds: float = Field(default=10.0, gt=0, description="length of the load")
    event_bench_tick_seconds: float = Field(
        default=0.01, gt=0, description="the producer adds rate x tick events each tick"
    )
    event_bench_probe_users: int = Field(
        default=100, ge=1, description="users of the prober's own (none of the load's)"
    )
    event_bench_poll_seconds: float = Field(
        default=0.0005, gt=0, description="how often the prober reads the record"
    )
    event_bench_goal_p99_ms: float = Field(
        default=50.0, gt=0, description="largest p99 XADD -> visible at the load's rate"
    )
    event_bench_seed: int = Field(default=3, description="draws users and items")
    event_bench_report: Path = Field(
        default=REPO_ROOT / "docs" / "benchmarks" / "events.md", description="the report"
    )


@dataclass(frozen=True)
class Figures:
    backlog: int
    drain_seconds: float
    produced: int
    produce_seconds: float
    probes: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    batch_settings: str


def store_format(settings: EventBenchSettings) -> StoreFormat:
    return StoreFormat(STORE, "integer", "integer", settings.event_bench_history)


def consumer_settings(settings: EventBenchSettings, keys: RedisKeys) -> EventSettings:
    return EventSettings(
        redis_url=settings.redis_url,
        redis_key_prefix=keys.prefix,
        events_group=GROUP,
        events_consumer="bench",
        events_metrics_port=0,
    )


def consume(settings: EventSettings, store: StoreFormat, stop: Any) -> None:
    """The consumer process: one consumer writing `store` until `stop` is set."""
    configure_logging(logging.WARNING)
    consumer = EventConsumer(settings.redis_client(), settings, fixed_stores=[store])

    def relay() -> None:  # the parent's event -> this process's consumer
        stop.wait()
        consumer.stop.set()

    threading.Thread(target=relay, daemon=True).start()
    consumer.run()


def write_records(client: redis.Redis, keys: RedisKeys, settings: EventBenchSettings) -> None:
    """A record of a full history for every user of the load and of the prober."""
    rng = np.random.default_rng(settings.event_bench_seed)
    users = settings.event_bench_users + settings.event_bench_probe_users
    for start in range(1, users + 1, WRITE_BATCH):
        pipe = client.pipeline(transaction=False)
        for user in range(start, min(start + WRITE_BATCH, users + 1)):
            items = rng.integers(1, settings.event_bench_items, settings.event_bench_history)
            record = {"features": {"region": 1}, "history": items.tolist()}
            pipe.set(keys.user(STORE, user), orjson.dumps(record))
        pipe.execute()


def load_events(rng: np.random.Generator, count: int, settings: EventBenchSettings) -> list[dict]:
    users = rng.integers(1, settings.event_bench_users + 1, count)
    items = rng.integers(1, settings.event_bench_items, count)
    return [{"user": int(u), "item": int(i)} for u, i in zip(users, items, strict=True)]


def add(client: redis.Redis, keys: RedisKeys, events: list[dict]) -> None:
    pipe = client.pipeline(transaction=False)
    for fields in events:
        pipe.xadd(keys.events, fields)
    pipe.execute()


def remaining(client: redis.Redis, keys: RedisKeys) -> int:
    """Entries of the stream the group has not applied yet (undelivered + unacknowledged)."""
    for info in client.xinfo_groups(keys.events):
        if info["name"] == GROUP.encode():
            return int(info["lag"] + info["pending"])
    raise LookupError(f"no group {GROUP} on {keys.events}")


def drain(
    client: redis.Redis, keys: RedisKeys, settings: EventBenchSettings, start: Any
) -> tuple[int, float]:
    """(events, seconds): a backlog added before the consumer starts, timed from its first ack
    (so the process's start is not counted) until the group has applied everything."""
    rng = np.random.default_rng(settings.event_bench_seed + 1)
    backlog = load_events(rng, settings.event_bench_backlog, settings)
    for first in range(0, len(backlog), WRITE_BATCH):
        add(client, keys, backlog[first : first + WRITE_BATCH])
    client.xgroup_create(keys.events, GROUP, id="0")
    start()
    pause = settings.event_bench_poll_seconds
    while (left := remaining(client, keys)) == len(backlog):
        time.sleep(pause)
    started = time.perf_counter()
    while remaining(client, keys):
        time.sleep(pause)
    return left, time.perf_counter() - started


def produce(client: redis.Redis, keys: RedisKeys, settings: EventBenchSettings) -> int:
    """The load: rate x tick events each tick, for `event_bench_seconds`. Events added."""
    rng = np.random.default_rng(settings.event_bench_seed + 2)
    per_tick = max(1, round(settings.event_bench_rate * settings.event_bench_tick_seconds))
    ticks = round(settings.event_bench_seconds / settings.event_bench_tick_seconds)
    started = time.perf_counter()
    for tick in range(ticks):
        add(client, keys, load_events(rng, per_tick, settings))
        wait = started + (tick + 1) * settings.event_bench_tick_seconds - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    return per_tick * ticks


def probe(
    client: redis.Redis, keys: RedisKeys, settings: EventBenchSettings, stop: threading.Event
) -> list[float]:
    """One event at a time for the prober's users: ms from before its XADD until its entry is in
    the record's history."""
    latencies = []
    first_user = settings.event_bench_users + 1
    n = 0
    while not stop.is_set():
        user = first_user + n % settings.event_bench_probe_users
        key = keys.user(STORE, user)
        started = time.perf_counter()
        added = client.xadd(keys.events, {"user": user, "item": 1 + n})
        entry = added.decode() if isinstance(added, bytes) else added
        while entry not in orjson.loads(client.get(key) or b"{}").get("history_events", []):
            time.sleep(settings.event_bench_poll_seconds)
        latencies.append((time.perf_counter() - started) * MS)
        n += 1
    return latencies


def measure(settings: EventBenchSettings) -> Figures:
    keys = RedisKeys(f"event-bench-{uuid.uuid4().hex[:8]}:")
    client = redis.Redis.from_url(settings.redis_url)
    events = consumer_settings(settings, keys)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    consumer = context.Process(target=consume, args=(events, store_format(settings), stop))
    try:
        write_records(client, keys, settings)
        drained, seconds = drain(client, keys, settings, consumer.start)
        log.info("%d events of the backlog applied in %.2f s", drained, seconds)
        done = threading.Event()
        latencies: list[float] = []
        prober_client = redis.Redis.from_url(settings.redis_url)
        prober = threading.Thread(
            target=lambda: latencies.extend(probe(prober_client, keys, settings, done))
        )
        prober.start()
        produce_started = time.perf_counter()
        produced = produce(client, keys, settings)
        produce_seconds = time.perf_counter() - produce_started
        done.set()
        prober.join()
    finally:
        stop.set()
        consumer.join(timeout=10)
        for key in client.scan_iter(match=f"{keys.prefix}*", count=WRITE_BATCH):
            client.delete(key)
    timed = np.asarray(latencies)
    return Figures(
        backlog=drained,
        drain_seconds=seconds,
        produced=produced,
        produce_seconds=produce_seconds,
        probes=timed.size,
        p50_ms=float(np.percentile(timed, 50)),
        p99_ms=float(np.percentile(timed, 99)),
        max_ms=float(timed.max()),
        batch_settings=f"COUNT {events.events_batch_size}, BLOCK {events.events_block_ms} ms",
    )


def verdict(figures: Figures, settings: EventBenchSettings) -> str:
    passed = figures.p99_ms <= settings.event_bench_goal_p99_ms
    return (
        f"{'PASS' if passed else 'MISS'} XADD -> visible p99 {figures.p99_ms:.1f} ms at "
        f"{settings.event_bench_rate:,.0f} events/s (<= {settings.event_bench_goal_p99_ms:g} ms); "
        f"one consumer sustains {figures.backlog / figures.drain_seconds:,.0f} events/s"
    )


def render(figures: Figures, settings: EventBenchSettings, command: str) -> str:
    from research.markdown import markdown_templates  # imports torch: not in the consumer's child

    environment = markdown_templates(TEMPLATE.parent, {"fmt": format}, trim_blocks=True)
    redis_version = redis.Redis.from_url(settings.redis_url).info("server")["redis_version"]
    return environment.get_template(TEMPLATE.name).render(
        f=figures,
        s=settings,
        verdict=verdict(figures, settings),
        command=command,
        written=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        cpu=cpu_model(),
        cores=os.cpu_count(),
        load=", ".join(f"{value:.2f}" for value in os.getloadavg()),
        system=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        redis_version=redis_version,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.event_bench", description=__doc__)
    parser.parse_args(argv)
    configure_logging(logging.INFO)
    settings = load_settings(EventBenchSettings)
    figures = measure(settings)
    text = render(figures, settings, "python -m research.event_bench")
    settings.event_bench_report.parent.mkdir(parents=True, exist_ok=True)
    partial = settings.event_bench_report.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(settings.event_bench_report)
    print(verdict(figures, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
