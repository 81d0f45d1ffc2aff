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


def _history(record: Mapping[str, Any]) -> tuple[list[str], list[RawId]]:
    """(entry id of each history element, the items), oldest first. A record publish wrote has
    no `history_events`: every element is then `PUBLISHED`."""
    items = list(record.get(HISTORY, []))
    entries = record.get(HISTORY_EVENTS)
    if entries is None or len(entries) != len(items):
        return [format_entry_id(PUBLISHED)] * len(items), items
    return list(entries), items


def _insert(
    texts: list[str], items: list[RawId], new: list[tuple[EntryId, str, RawId]]
) -> tuple[list[str], list[RawId]]:
    """The history with `new` elements (entry, its text, item) in entry-id order. Ids are parsed
    only when some new one is older than the newest held (a late claim): events mostly arrive
    newest last, and the history is kept sorted."""
    new.sort(key=lambda element: element[0])
    if not texts or new[0][0] > parse_entry_id(texts[-1]):
        return texts + [text for _, text, _ in new], items + [item for _, _, item in new]
    merged = [(parse_entry_id(t), t, i) for t, i in zip(texts, items, strict=True)] + new
    merged.sort(key=lambda element: element[0])  # stable: published elements keep their order
    return [text for _, text, _ in merged], [item for _, _, item in merged]


def apply_events(
    record: Mapping[str, Any] | None, events: Iterable[Event], max_history: int
) -> Applied:
    """`record` (None: a user unknown so far) with `events` applied, history capped at
    `max_history` [<= L elements, most recent last]."""
    record = record or {}
    texts, items = _history(record)
    present = set(texts)
    features: dict[str, FeatureValue] = dict(record.get(FEATURES, {}))
    feature_events: dict[str, str] = dict(record.get(FEATURE_EVENTS, {}))
    last_before = parse_entry_id(record.get(LAST_EVENT, format_entry_id(PUBLISHED)))
    last = last_before
    new: list[tuple[EntryId, str, RawId]] = []
    profile_changes: set[EntryId] = set()
    seen: list[EntryId] = []
    for event in events:
        seen.append(event.entry)
        last = max(last, event.entry)
        text = format_entry_id(event.entry)
        if event.positive and text not in present:
            new.append((event.entry, text, event.item))
            present.add(text)
        for name, value in event.features.items():
            setter = feature_events.get(name)
            if event.entry > (PUBLISHED if setter is None else parse_entry_id(setter)):
                features[name] = value
                feature_events[name] = text
                profile_changes.add(event.entry)
    if new:
        texts, items = _insert(texts, items, new)
    texts, items = texts[-max_history:], items[-max_history:]
    kept = set(texts)
    effective = {entry for entry, text, _ in new if text in kept} | profile_changes
    duplicates = sum(1 for e in seen if e <= last_before and e not in effective)
    new_record = {
        FEATURES: features,
        HISTORY: items,
        HISTORY_EVENTS: texts,
        FEATURE_EVENTS: feature_events,
        LAST_EVENT: format_entry_id(last),
    }
    return Applied(new_record, len(seen) - duplicates, duplicates)


def carry_events(
    published: Mapping[str, Any], live: Mapping[str, Any] | None, after_ms: int, max_history: int
) -> dict[str, Any] | None:
    """The record a republish writes over `live` (the record in Redis): `published` (the new
    training data's) with what the events stream wrote into `live` after `after_ms` (the entry
    ids' time: when the job read its data, so those events cannot be in it): their history
    elements appended in entry order, the profile fields they set. The result is what applying
    those events to `published` gives, so a redelivered one is still skipped. None when `live`
    holds no such event (write `published` as it is)."""
    if not live:
        return None
    texts, items = _history(live)
    kept = [(t, i) for t, i in zip(texts, items, strict=True) if parse_entry_id(t)[0] > after_ms]
    live_features = live.get(FEATURES, {})
    setters = {
        name: setter
        for name, setter in live.get(FEATURE_EVENTS, {}).items()
        if parse_entry_id(setter)[0] > after_ms and name in live_features
    }
    if not kept and not setters:
        return None
    history = list(published.get(HISTORY, []))
    texts = [format_entry_id(PUBLISHED)] * len(history) + [t for t, _ in kept]
    items = history + [i for _, i in kept]
    features = dict(published.get(FEATURES, {}))
    features.update({name: live_features[name] for name in setters})
    return {
        FEATURES: features,
        HISTORY: items[-max_history:],
        HISTORY_EVENTS: texts[-max_history:],
        FEATURE_EVENTS: setters,
        LAST_EVENT: live.get(LAST_EVENT, format_entry_id(PUBLISHED)),
    }
