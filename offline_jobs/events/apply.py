"""The record update: one user's feature-store record + events -> the new record. Pure.

Commutative and idempotent, so several consumers need no ordering between them: the record keeps,
beside `history`, the stream entry id of each element (`history_events`, same length; what
publish wrote counts as entry ``0-0``, older than any event), the entry id that set each profile
field (`feature_events`) and the largest entry applied (`last_event`, for information and lag).
An event inserts its item at its entry id's place, unless that id is there already; the most
recent `max_history` by entry id are kept; a profile field changes only for an entry newer than
the one that set it. Any order and any repetition of a set of events so give the record that
replaying each of them once, in stream order, gives.

Why not "skip entries at or below the last applied id": consumer A dies holding entry 5 of user
u, consumer B applies entry 7 of u, B later claims 5 and would skip it, losing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from offline_jobs.events.entries import (
    PUBLISHED,
    EntryId,
    Event,
    FeatureValue,
    RawId,
    format_entry_id,
    parse_entry_id,
)

FEATURES = "features"
HISTORY = "history"
HISTORY_EVENTS = "history_events"
FEATURE_EVENTS = "feature_events"
LAST_EVENT = "last_event"


@dataclass(frozen=True)
class Applied:
    """The new record, and how many events changed it (`applied`) or were skipped as already
    applied (`duplicates`: at or below the record's `last_event` and changing nothing, a
    redelivery or an event newer ones had already superseded)."""

    record: dict[str, Any]
    applied: int
    duplicates: int


def _history(record: Mapping[str, Any]) -> list[tuple[EntryId, RawId]]:
    """(entry id, item) of each history element, oldest first. A record publish wrote has no
    `history_events`: every element is then `PUBLISHED`."""
    items = list(record.get(HISTORY, []))
    entries = record.get(HISTORY_EVENTS)
    if entries is None or len(entries) != len(items):
        return [(PUBLISHED, item) for item in items]
    return [(parse_entry_id(e), item) for e, item in zip(entries, items, strict=True)]


def apply_events(
    record: Mapping[str, Any] | None, events: Iterable[Event], max_history: int
) -> Applied:
    """`record` (None: a user unknown so far) with `events` applied, history capped at
    `max_history` [<= L elements, most recent last]."""
    record = record or {}
    history = _history(record)
    present = {entry for entry, _ in history}
    features: dict[str, FeatureValue] = dict(record.get(FEATURES, {}))
    feature_events = {k: parse_entry_id(v) for k, v in record.get(FEATURE_EVENTS, {}).items()}
    last_before = parse_entry_id(record.get(LAST_EVENT, format_entry_id(PUBLISHED)))
    last = last_before
    inserted: list[EntryId] = []
    profile_changes: set[EntryId] = set()
    seen: list[EntryId] = []
    for event in events:
        seen.append(event.entry)
        last = max(last, event.entry)
        if event.positive and event.entry not in present:
            history.append((event.entry, event.item))
            present.add(event.entry)
            inserted.append(event.entry)
        for name, value in event.features.items():
            if event.entry > feature_events.get(name, PUBLISHED):
                features[name] = value
                feature_events[name] = event.entry
                profile_changes.add(event.entry)
    history.sort(key=lambda element: element[0])  # stable: published elements keep their order
    history = history[-max_history:]
    kept = {entry for entry, _ in history}
    effective = {e for e in inserted if e in kept} | profile_changes
    duplicates = sum(1 for e in seen if e <= last_before and e not in effective)
    new_record = {
        FEATURES: features,
        HISTORY: [item for _, item in history],
        HISTORY_EVENTS: [format_entry_id(entry) for entry, _ in history],
        FEATURE_EVENTS: {k: format_entry_id(v) for k, v in feature_events.items()},
        LAST_EVENT: format_entry_id(last),
    }
    return Applied(new_record, len(seen) - duplicates, duplicates)
