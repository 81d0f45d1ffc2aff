"""A batch's events written to one feature store: read, update in Python, compare-and-set.

Records are never parsed in Lua: its cjson reads numbers as doubles and would round int64 ids.
So the batch's records are read with one pipelined GET, updated here (`apply_events`), and each
written back by a script that sets the key only if it still holds the bytes read: one key per
call, so any Redis Cluster slot layout serves. A record another consumer changed in between is
read and updated again, at most `retries` times; users still conflicting are returned, and their
entries are left unacknowledged (claimed and applied again later, which the update allows).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from offline_jobs.events.apply import apply_events
from offline_jobs.events.entries import Event, RawId, StoreFormat
from prerank_contract.keys import RedisKeys

log = logging.getLogger(__name__)

# KEYS[1]: the record. ARGV[1]: "1" when a value was read ("0": the key was absent); ARGV[2]: the
# bytes read; ARGV[3]: the new record. 1 when written, 0 when the key changed meanwhile.
COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if (ARGV[1] == '0' and current == false) or (ARGV[1] == '1' and current == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3])
  return 1
end
return 0
"""
DUMP_OPTIONS = orjson.OPT_SORT_KEYS  # the same record, the same bytes, whatever the event order


@dataclass
class StoreWrite:
    """What writing one batch to one store did: events `applied` and `duplicates` (skipped),
    compare-and-set `conflicts` retried, and the `unwritten` users (retries exhausted)."""

    applied: int = 0
    duplicates: int = 0
    conflicts: int = 0
    unwritten: set[RawId] = field(default_factory=set)


def decode_record(raw: bytes | None, key: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        log.warning("%s does not hold a JSON record; replaced by one from its events", key)
        return None
    return record


def write_events(
    client: Any,
    keys: RedisKeys,
    store: StoreFormat,
    events: Mapping[RawId, Sequence[Event]],
    retries: int,
) -> StoreWrite:
    """Apply each user's `events` to its record in `store`; see the module's docstring."""
    outcome = StoreWrite()
    pending = dict(events)
    for attempt in range(retries + 1):
        users = list(pending)
        record_keys = [keys.user(store.store, user) for user in users]
        read = client.pipeline(transaction=False)
        for key in record_keys:
            read.get(key)
        currents: list[bytes | None] = read.execute()
        write = client.pipeline(transaction=False)
        written: list[tuple[RawId, int, int]] = []
        for user, key, current in zip(users, record_keys, currents, strict=True):
            applied = apply_events(decode_record(current, key), pending[user], store.max_history)
            new = orjson.dumps(applied.record, option=DUMP_OPTIONS)
            if new == current:  # every event already applied: nothing to write
                outcome.duplicates += applied.duplicates
                continue
            found = "0" if current is None else "1"
            # EVAL by name: a cluster pipeline's eval() runs the pipeline, it sends no EVAL
            write.execute_command("EVAL", COMPARE_AND_SET, 1, key, found, current or b"", new)
            written.append((user, applied.applied, applied.duplicates))
        results = write.execute() if written else []
        conflicting = {}
        for (user, applied_count, duplicates), result in zip(written, results, strict=True):
            if result == 1:
                outcome.applied += applied_count
                outcome.duplicates += duplicates
            else:
                conflicting[user] = pending[user]
        if not conflicting:
            return outcome
        outcome.conflicts += len(conflicting)
        pending = conflicting
        log.debug("attempt %d: %d records changed meanwhile; again", attempt + 1, len(pending))
    outcome.unwritten = set(pending)
    return outcome
