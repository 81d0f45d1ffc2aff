"""One stream entry -> a typed `Event`, or `MalformedEventError` saying why it cannot be applied.

An entry's fields arrive as bytes: ``user`` and ``item`` (raw ids), optional ``ts`` (ms),
optional ``label`` (0 or 1, default 1) and optional ``f.<name>`` profile values. Each is read as
the store it is written to spells it (`StoreFormat`): ids as integers or strings, profile values
as their vocabulary's type, so a record written from events reads as one written at publish time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import orjson

EntryId = tuple[int, int]
"""A stream entry id ``<ms>-<seq>`` as two integers: tuples order as Redis orders ids."""

PUBLISHED: EntryId = (0, 0)
"""The entry id of what publish wrote: older than any event."""

IdKind = Literal["integer", "string"]
ValueType = Literal["integer", "string", "float"]
RawId = int | str
RawValue = int | float | str
FeatureValue = RawValue | list[RawValue]

USER_FIELD = b"user"
ITEM_FIELD = b"item"
TS_FIELD = b"ts"
LABEL_FIELD = b"label"
PROFILE_PREFIX = b"f."
LABELS = {b"0": False, b"1": True}  # binary labels, as training reads them: 1 enters the history
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class MalformedEventError(ValueError):
    """An entry that cannot be applied; the message is the dead letter's `reason`."""


def parse_entry_id(text: str | bytes) -> EntryId:
    """``b"1700000000000-3"`` -> (1700000000000, 3)."""
    raw = text.decode() if isinstance(text, bytes) else text
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def format_entry_id(entry: EntryId) -> str:
    return f"{entry[0]}-{entry[1]}"


@dataclass(frozen=True)
class FieldFormat:
    """How a profile field's raw values are written: their type, and for a multi-valued field
    (`multi`) the separator of its values in one string (None: a JSON array)."""

    value_type: ValueType
    multi: bool = False
    separator: str | None = None


@dataclass(frozen=True)
class StoreFormat:
    """How one feature store spells ids and profile values, and the history it keeps."""

    store: str
    user_ids: IdKind
    item_ids: IdKind
    max_history: int
    fields: Mapping[str, FieldFormat] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """One applicable entry: `positive` ones enter the user's history; `features` (raw values)
    replace the profile's."""

    entry: EntryId
    user: RawId
    item: RawId
    positive: bool
    ts_ms: int
    features: Mapping[str, FeatureValue] = field(default_factory=dict)


def _text(value: bytes, name: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise MalformedEventError(f"{name}: not UTF-8 text") from None


def _integer(text: str, name: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise MalformedEventError(f"{name}: {text[:40]!r} is not an integer") from None
    if not INT64_MIN <= number <= INT64_MAX:
        raise MalformedEventError(f"{name}: {number} is outside int64")
    return number


def parse_id(value: bytes | None, name: str, kind: IdKind, max_length: int) -> RawId:
    """A raw user or item id, as the store's ids are written."""
    if value is None:
        raise MalformedEventError(f"{name}: missing")
    if len(value) > max_length:
        raise MalformedEventError(f"{name}: {len(value)} bytes long; at most {max_length}")
    text = _text(value, name)
    if not text:
        raise MalformedEventError(f"{name}: empty")
    return _integer(text, name) if kind == "integer" else text


def _scalar(text: str, value_type: ValueType, name: str) -> RawValue:
    if value_type == "string":
        return text
    if value_type == "integer":
        return _integer(text, name)
    try:
        number = float(text)
    except ValueError:
        raise MalformedEventError(f"{name}: {text[:40]!r} is not a number") from None
    if not math.isfinite(number):
        raise MalformedEventError(f"{name}: {text[:40]!r} is not a finite number")
    return number


def _json_list(text: str, name: str) -> list[str]:
    """A multi-valued field without a separator: a JSON array, its values read as text."""
    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise MalformedEventError(f"{name}: not a JSON array") from None
    if not isinstance(values, list) or any(isinstance(v, list | dict | bool) for v in values):
        raise MalformedEventError(f"{name}: not a JSON array of values")
    return [str(v) for v in values]


def parse_value(value: bytes, name: str, spec: FieldFormat) -> FeatureValue:
    """A profile value (`name`: the entry's field) as the store writes it."""
    text = _text(value, name)
    if not spec.multi:
        return _scalar(text, spec.value_type, name)
    parts = text.split(spec.separator) if spec.separator else _json_list(text, name)
    return [_scalar(part, spec.value_type, name) for part in parts]


def parse_event(
    entry_id: bytes | str, fields: Mapping[bytes, bytes], store: StoreFormat, max_id_length: int
) -> Event:
    """The event an entry describes, as `store` spells it; MalformedEventError naming the field
    at fault otherwise. Fields other than the documented ones are ignored."""
    entry = parse_entry_id(entry_id)
    user = parse_id(fields.get(USER_FIELD), "user", store.user_ids, max_id_length)
    item = parse_id(fields.get(ITEM_FIELD), "item", store.item_ids, max_id_length)
    label = fields.get(LABEL_FIELD, b"1")
    if label not in LABELS:
        raise MalformedEventError(f"label: {label[:40]!r} is neither 0 nor 1")
    raw_ts = fields.get(TS_FIELD)
    ts_ms = entry[0] if raw_ts is None else _integer(_text(raw_ts, "ts"), "ts")
    if ts_ms < 0:
        raise MalformedEventError(f"ts: {ts_ms} is negative")
    features: dict[str, FeatureValue] = {}
    for key, value in fields.items():
        if not key.startswith(PROFILE_PREFIX):
            continue
        name = _text(key[len(PROFILE_PREFIX) :], "a profile field's name")
        spec = store.fields.get(name)
        if spec is None:
            known = ", ".join(sorted(store.fields))
            raise MalformedEventError(f"f.{name}: not a profile field of the store; known: {known}")
        features[name] = parse_value(value, f"f.{name}", spec)
    return Event(entry, user, item, LABELS[label], ts_ms, features)
