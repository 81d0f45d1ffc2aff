"""The consumer loop: one member of a Redis consumer group on the events stream.

Each pass: create the group if needed -> re-read the pointers (every `events_pointer_poll_seconds`)
-> claim entries other consumers have held too long (XAUTOCLAIM, at start and every
`events_claim_interval_seconds`) -> read new entries (XREADGROUP, BLOCK) -> apply the batch to
every served store (`writer`) -> dead-letter what cannot be applied -> XACK -> trim the stream.
An entry is acknowledged only after its records and dead letter are written, so a consumer
killed at any point leaves it pending, for another to claim and apply again, which the record
update (`apply`) makes harmless. A failed Redis command backs off (doubling, capped) and the loop
goes on: the consumer outlives a Redis restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import redis

from offline_jobs.events.entries import (
    Event,
    MalformedEventError,
    RawId,
    StoreFormat,
    parse_entry_id,
    parse_event,
)
from offline_jobs.events.metrics import EventMetrics
from offline_jobs.events.settings import MS_PER_SECOND, EventSettings
from offline_jobs.events.stores import Pointers, read_served_pointers, served_stores
from offline_jobs.events.writer import write_events
from prerank_contract.redis_client import REDIS_ERRORS

log = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes] | None]  # (entry id, fields; None: trimmed meanwhile)
REASON_FIELD = b"reason"
ENTRY_FIELD = b"entry"
STREAM_START = "0-0"  # XAUTOCLAIM's cursor: from the start, and its answer when done


# A claimed entry may have been dead-lettered already by a consumer killed before its XACK: add
# the dead letter only if none of those written since the entry's own time (less the clocks'
# skew) names it. KEYS[1]: the dead-letter stream. ARGV: the entry id, the first dead-letter id
# to look at, the approximate max length (0: none), then the fields and values.
DEAD_LETTER_ONCE = """
for _, letter in ipairs(redis.call('XRANGE', KEYS[1], ARGV[2], '+')) do
  local fields = letter[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'entry' and fields[i + 1] == ARGV[1] then return 0 end
  end
end
if ARGV[3] == '0' then
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
else
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
end
return 1
"""


class EventConsumer:
    """`run()` until `stop` is set; `step()` is one pass (raises one of REDIS_ERRORS)."""

    def __init__(
        self,
        client: Any,
        settings: EventSettings,
        metrics: EventMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        fixed_stores: Sequence[StoreFormat] | None = None,
    ) -> None:
        """`fixed_stores`: write these stores instead of following the pointers (a benchmark's
        store of its own, with no version published)."""
        self.client = client
        self.settings = settings
        self.consumer = settings.consumer_name  # fixed for the life of this consumer
        self.keys = settings.keys
        self.metrics = metrics or EventMetrics()
        self.clock = clock
        self.stop = threading.Event()
        self.stores: list[StoreFormat] = list(fixed_stores or [])
        self._fixed = fixed_stores is not None
        self._pointers: Pointers | None = None
        self._due = {"pointers": -float("inf"), "claim": -float("inf"), "stats": -float("inf")}
        self._group_ready = False
        self._failures = 0

    def run(self) -> None:
        """Consume until `stop` is set; Redis errors back off and never end the loop."""
        log.info(
            "consumer %s of group %s on %s",
            self.consumer,
            self.settings.events_group,
            self.keys.events,
        )
        while not self.stop.is_set():
            try:
                self.step()
            except REDIS_ERRORS as exc:
                self._backoff(exc)
            else:
                if self._failures:
                    log.info("Redis answers again after %d failed passes", self._failures)
                self._failures = 0

    def _backoff(self, exc: Exception) -> None:
        self._failures += 1
        self.metrics.redis_errors.inc()
        if "NOGROUP" in str(exc):  # the group is gone (a Redis that lost its data): create it
            self._group_ready = False
        settings = self.settings
        delay = min(
            settings.events_backoff_seconds * 2 ** (self._failures - 1),
            settings.events_backoff_max_seconds,
        )
        log.warning("Redis failed (%s); trying again in %.2f s", exc, delay)
        self.stop.wait(delay)

    def _is_due(self, what: str, interval: float) -> bool:
        now = self.clock()
        if now < self._due[what]:
            return False
        self._due[what] = now + interval
        return True

    def step(self) -> int:
        """One pass; the number of entries handled."""
        settings = self.settings
        self._ensure_group()
        if not self._fixed and self._is_due("pointers", settings.events_pointer_poll_seconds):
            self._refresh_stores()
        if not self.stores:  # nothing is served: entries wait in the stream
            self.stop.wait(settings.events_block_ms / MS_PER_SECOND)
            return 0
        handled = 0
        if self._is_due("claim", settings.events_claim_interval_seconds):
            handled += self._claim()
        handled += self._read_new()
        if self._is_due("stats", settings.events_stats_interval_seconds):
            self._read_stats()
        return handled

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.client.xgroup_create(
                self.keys.events,
                self.settings.events_group,
                id=self.settings.events_group_start_id,
                mkstream=True,
            )
            log.info("created group %s on %s", self.settings.events_group, self.keys.events)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _refresh_stores(self) -> None:
        pointers = read_served_pointers(self.client, self.keys)
        if pointers == self._pointers:
            return
        try:
            stores = served_stores(self.client, self.keys, pointers)
        except LookupError as exc:
            log.warning("%s: waiting", exc)
            stores = []
        self._pointers, self.stores = pointers, stores
        log.info("writing stores %s (active %s)", [s.store for s in stores], pointers[0])

    def _claim(self) -> int:
        """Every entry idle past `events_claim_idle_seconds`, a page at a time."""
        settings = self.settings
        idle_ms = int(settings.events_claim_idle_seconds * MS_PER_SECOND)
        cursor, handled = STREAM_START, 0
        while True:
            answer = self.client.xautoclaim(
                self.keys.events,
                settings.events_group,
                self.consumer,
                idle_ms,
                start_id=cursor,
                count=settings.events_batch_size,
            )
            cursor, entries = answer[0], answer[1]
            deleted = answer[2] if len(answer) > 2 else []
            if deleted:  # trimmed before anyone applied them; XAUTOCLAIM dropped them from the PEL
                log.warning("%d pending entries were trimmed unapplied", len(deleted))
                self.metrics.lost.inc(len(deleted))
            if entries:
                log.info("claimed %d entries idle for %d ms or more", len(entries), idle_ms)
                self.handle(entries, claimed=True)
                handled += len(entries)
            if parse_entry_id(cursor) == parse_entry_id(STREAM_START):
                return handled

    def _read_new(self) -> int:
        settings = self.settings
        answer = self.client.xreadgroup(
            settings.events_group,
            self.consumer,
            {self.keys.events: ">"},
            count=settings.events_batch_size,
            block=settings.events_block_ms,
        )
        entries = [entry for _, stream_entries in answer or [] for entry in stream_entries]
        if entries:
            self.handle(entries, claimed=False)
        return len(entries)

    def _read_stats(self) -> None:
        for group in self.client.xinfo_groups(self.keys.events):
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == self.settings.events_group:
                if group.get("lag") is not None:  # None: Redis cannot tell (after deletions)
                    self.metrics.lag.set(group["lag"])
                self.metrics.pending.set(group["pending"])

    def handle(self, entries: Sequence[Entry], claimed: bool) -> None:
        """Apply a batch to every served store, dead-letter what cannot be applied, then XACK
        all but the entries of users whose records stayed in conflict."""
        started = time.perf_counter()
        by_store: dict[str, dict[RawId, list[Event]]] = {
            s.store: defaultdict(list) for s in self.stores
        }
        owners: dict[bytes, list[tuple[str, RawId]]] = {}
        dead: list[tuple[bytes, dict[bytes, bytes], str]] = []
        done: list[bytes] = []
        for entry_id, fields in entries:
            if fields is None:  # trimmed after delivery: nothing left to apply
                self.metrics.lost.inc()
                done.append(entry_id)
                continue
            try:
                events = [
                    parse_event(entry_id, fields, store, self.settings.events_max_id_length)
                    for store in self.stores
                ]
            except MalformedEventError as exc:
                dead.append((entry_id, fields, str(exc)))
                continue
            owners[entry_id] = [
                (event_store.store, e.user)
                for event_store, e in zip(self.stores, events, strict=True)
            ]
            for store, event in zip(self.stores, events, strict=True):
                by_store[store.store][event.user].append(event)
        self._dead_letter(dead, claimed)
        unwritten: set[tuple[str, RawId]] = set()
        for store in self.stores:
            outcome = write_events(
                self.client,
                self.keys,
                store,
                by_store[store.store],
                self.settings.events_write_retries,
            )
            self.metrics.applied.inc(outcome.applied)
            self.metrics.duplicates.inc(outcome.duplicates)
            self.metrics.conflicts.inc(outcome.conflicts)
            unwritten |= {(store.store, user) for user in outcome.unwritten}
        done += [e for e, users in owners.items() if not unwritten.intersection(users)]
        done += [entry_id for entry_id, _, _ in dead]
        self._acknowledge(done)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _dead_letter(
        self, dead: Sequence[tuple[bytes, dict[bytes, bytes], str]], claimed: bool
    ) -> None:
        """Each entry's fields, `reason` and `entry` onto the dead-letter stream; a claimed one
        only if no dead letter names it yet (`DEAD_LETTER_ONCE`)."""
        if not dead:
            return
        settings = self.settings
        max_length = settings.events_dead_max_length
        pipe = self.client.pipeline(transaction=False)
        for entry_id, fields, reason in dead:
            log.warning("dead letter %s: %s", entry_id.decode(), reason)
            letter = {**fields, REASON_FIELD: reason.encode(), ENTRY_FIELD: entry_id}
            if not claimed:
                pipe.xadd(
                    self.keys.events_dead, letter, maxlen=max_length or None, approximate=True
                )
                continue
            skew_ms = int(settings.events_clock_skew_seconds * MS_PER_SECOND)
            since = f"{max(parse_entry_id(entry_id)[0] - skew_ms, 0)}-0"
            flat = [part for pair in letter.items() for part in pair]
            script = (DEAD_LETTER_ONCE, 1, self.keys.events_dead, entry_id, since, max_length)
            pipe.execute_command("EVAL", *script, *flat)  # a cluster pipeline's eval() is not EVAL
        added = sum(1 for result in pipe.execute() if result)  # 0: a dead letter named it already
        self.metrics.dead_lettered.inc(added)

    def _acknowledge(self, entry_ids: Sequence[bytes]) -> None:
        """XACK, then trim the stream (the producer's XADD MAXLEN cannot trim what it adds)."""
        pipe = self.client.pipeline(transaction=False)
        if entry_ids:
            pipe.xack(self.keys.events, self.settings.events_group, *entry_ids)
        if self.settings.events_stream_max_length:
            pipe.xtrim(
                self.keys.events, maxlen=self.settings.events_stream_max_length, approximate=True
            )
        pipe.execute()
