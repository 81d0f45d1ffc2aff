"""The record update is commutative and idempotent: any order and any repetition of a set of
events give the record of replaying each once in stream order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from offline_jobs.events.apply import apply_events
from offline_jobs.events.entries import Event
from tests.offline_jobs.events.replay import replay

MAX_HISTORY = 4
PUBLISHED_RECORD = {"features": {"age": 3, "city": "Oslo"}, "history": [11, 12, 13]}


def event(ms: int, item: int, positive: bool = True, **features: object) -> Event:
    return Event((ms, 0), user=1, item=item, positive=positive, ts_ms=ms, features=features)


@st.composite
def event_sets(draw: st.DrawFn) -> list[Event]:
    """Up to 12 events of distinct entry ids, some negatives, some setting a profile field."""
    stamps = draw(st.lists(st.integers(1, 10**13), min_size=1, max_size=12, unique=True))
    events = []
    for ms in stamps:
        fields = draw(st.dictionaries(st.sampled_from(["age", "city"]), st.integers(0, 9)))
        events.append(event(ms, draw(st.integers(1, 50)), draw(st.booleans()), **fields))
    return events


@settings(max_examples=200, deadline=None)
@given(events=event_sets(), data=st.data())
def test_any_order_and_repetition_gives_the_in_order_replay(events: list[Event], data) -> None:
    """Shuffled, with repeats, in batches of any size (each batch applied to the last record)."""
    expected = replay(PUBLISHED_RECORD, events, MAX_HISTORY)
    delivered = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events)))))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(delivered)), max_size=4)))
    record: dict | None = PUBLISHED_RECORD
    for start, stop in zip([0, *cuts], [*cuts, len(delivered)], strict=True):
        record = apply_events(record, delivered[start:stop], MAX_HISTORY).record
    assert record is not None
    assert {"features": record["features"], "history": record["history"]} == expected
    in_order = apply_events(PUBLISHED_RECORD, sorted(events, key=lambda e: e.entry), MAX_HISTORY)
    assert record == in_order.record  # the bookkeeping too, byte for byte once serialised


def test_a_new_user_gets_a_record_from_its_first_event() -> None:
    applied = apply_events(None, [event(5, 77, city="Rome")], MAX_HISTORY)
    assert applied.record == {
        "features": {"city": "Rome"},
        "history": [77],
        "history_events": ["5-0"],
        "feature_events": {"city": "5-0"},
        "last_event": "5-0",
    }
    assert (applied.applied, applied.duplicates) == (1, 0)


def test_a_redelivered_event_is_counted_as_a_duplicate_and_changes_nothing() -> None:
    first = apply_events(PUBLISHED_RECORD, [event(5, 77), event(6, 78, age=4)], MAX_HISTORY)
    again = apply_events(first.record, [event(6, 78, age=4), event(5, 77)], MAX_HISTORY)
    assert again.record == first.record
    assert (again.applied, again.duplicates) == (0, 2)


def test_an_older_event_claimed_late_is_inserted_in_its_place_not_skipped() -> None:
    """Consumer A died holding entry 5; B applied 7; B's later claim of 5 must still count."""
    after_seven = apply_events(PUBLISHED_RECORD, [event(7, 70, age=7)], MAX_HISTORY).record
    late = apply_events(after_seven, [event(5, 50, age=5)], MAX_HISTORY)
    assert late.record["history"] == [12, 13, 50, 70]
    assert late.record["features"]["age"] == 7  # the newer entry's value stays
    assert (late.applied, late.duplicates) == (1, 0)


def test_negatives_set_the_profile_but_stay_out_of_the_history() -> None:
    applied = apply_events(PUBLISHED_RECORD, [event(9, 99, positive=False, age=1)], MAX_HISTORY)
    assert applied.record["history"] == [11, 12, 13]
    assert applied.record["features"] == {"age": 1, "city": "Oslo"}
