"""An entry's fields are read as the store spells ids and values, or refused with the reason a
dead letter carries."""

from __future__ import annotations

import pytest

from offline_jobs.events.entries import (
    Event,
    FieldFormat,
    MalformedEventError,
    StoreFormat,
    parse_event,
)

MAX_ID_LENGTH = 16
STRINGS = StoreFormat(
    "raw-x",
    user_ids="string",
    item_ids="string",
    max_history=8,
    fields={
        "age": FieldFormat("float"),
        "region": FieldFormat("string"),
        "tags": FieldFormat("integer", multi=True, separator="|"),
        "sizes": FieldFormat("integer", multi=True),
    },
)
INDICES = StoreFormat("schema", user_ids="integer", item_ids="integer", max_history=8)


def test_fields_are_read_as_the_store_spells_them() -> None:
    fields = {
        b"user": b"u-1",
        b"item": b"B7",
        b"label": b"0",
        b"ts": b"1700000000001",
        b"f.age": b"31.5",
        b"f.region": b"north",
        b"f.tags": b"3|5",
        b"f.sizes": b"[1, 2]",
        b"source": b"app",  # not ours: ignored
    }
    assert parse_event(b"1700000000002-4", fields, STRINGS, MAX_ID_LENGTH) == Event(
        (1700000000002, 4),
        user="u-1",
        item="B7",
        positive=False,
        ts_ms=1700000000001,
        features={"age": 31.5, "region": "north", "tags": [3, 5], "sizes": [1, 2]},
    )


def test_integer_ids_and_the_defaults() -> None:
    parsed = parse_event("17-0", {b"user": b"9", b"item": b"12"}, INDICES, MAX_ID_LENGTH)
    assert parsed == Event((17, 0), user=9, item=12, positive=True, ts_ms=17)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({b"item": b"B1"}, "user: missing"),
        ({b"user": b"u"}, "item: missing"),
        ({b"user": b"u" * (MAX_ID_LENGTH + 1), b"item": b"B1"}, "user: 17 bytes long"),
        ({b"user": b"u", b"item": b"B1", b"label": b"2"}, "label:"),
        ({b"user": b"u", b"item": b"B1", b"ts": b"soon"}, "ts:"),
        ({b"user": b"u", b"item": b"B1", b"f.age": b"old"}, "f.age: 'old' is not a number"),
        ({b"user": b"u", b"item": b"B1", b"f.age": b"nan"}, "f.age:"),
        ({b"user": b"u", b"item": b"B1", b"f.shoe": b"42"}, "f.shoe: not a profile field"),
        ({b"user": b"u", b"item": b"B1", b"f.sizes": b"{}"}, "f.sizes: not a JSON array"),
        ({b"user": b"\xff", b"item": b"B1"}, "user: not UTF-8"),
    ],
)
def test_a_malformed_entry_names_what_is_wrong(fields: dict[bytes, bytes], reason: str) -> None:
    with pytest.raises(MalformedEventError, match=reason.replace("(", r"\(")):
        parse_event(b"1-0", fields, STRINGS, MAX_ID_LENGTH)


def test_an_integer_store_refuses_a_text_id() -> None:
    with pytest.raises(MalformedEventError, match="item: 'B1' is not an integer"):
        parse_event(b"1-0", {b"user": b"3", b"item": b"B1"}, INDICES, MAX_ID_LENGTH)
