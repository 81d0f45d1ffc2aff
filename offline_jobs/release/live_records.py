"""Feature-store records published over live ones.

The event consumer (`offline_jobs.events`) keeps records fresh between releases. A republish
writes each user's record from the new training data, which cannot hold the events that arrived
after the job read it: those are carried into the new record (`carry_events`), and each record is
written with the consumers' compare-and-set, so an event a consumer applies meanwhile is merged,
not overwritten. A record no event touched is written as published.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from offline_jobs.data.records import RawId
from offline_jobs.events.apply import LAST_EVENT, carry_events
from offline_jobs.events.writer import COMPARE_AND_SET, DUMP_OPTIONS, decode_record
from prerank_contract.keys import RedisKeys

EVENT_MARK = f'"{LAST_EVENT}"'.encode()  # only a record the consumer wrote holds this key


class LiveRecordsConflictError(Exception):
    """Records kept changing under the publish: the consumers wrote them every time it tried."""


def merged_record(
    key: str, published: bytes, live: bytes | None, after_ms: int, max_history: int
) -> bytes:
    """The bytes to write over `live` (record `key`): `published`, with the events `live` got
    after `after_ms` carried in."""
    if live is None or EVENT_MARK not in live:
        return published
    carried = carry_events(orjson.loads(published), decode_record(live, key), after_ms, max_history)
    return published if carried is None else orjson.dumps(carried, option=DUMP_OPTIONS)


def write_over_live(
    client: Any,
    keys: RedisKeys,
    store: str,
    batch: Sequence[tuple[RawId, bytes]],
    *,
    after_ms: int,
    max_history: int,
    retries: int,
) -> None:
    """Write `batch`'s (user, published record) into `store`, each merged with its live record:
    one pipelined GET, one pipelined compare-and-set; the records changed in between are read
    and merged again, at most `retries` times."""
    pending = {keys.user(store, user): record for user, record in batch}
    for _ in range(retries + 1):
        record_keys = list(pending)
        read = client.pipeline(transaction=False)
        for key in record_keys:
            read.get(key)
        lives: list[bytes | None] = read.execute()
        write = client.pipeline(transaction=False)
        for key, live in zip(record_keys, lives, strict=True):
            new = merged_record(key, pending[key], live, after_ms, max_history)
            found = "0" if live is None else "1"
            write.execute_command("EVAL", COMPARE_AND_SET, 1, key, found, live or b"", new)
        results = write.execute()
        changed = [key for key, result in zip(record_keys, results, strict=True) if not result]
        pending = {key: pending[key] for key in changed}
        if not pending:
            return
    raise LiveRecordsConflictError(
        f"{len(pending)} records changed on every one of {retries + 1} tries while publishing "
        f"(the first: {next(iter(pending))})"
    )
