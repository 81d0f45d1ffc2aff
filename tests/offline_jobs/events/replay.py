"""The reference the event tests compare with: every event applied once, in stream order, the
plain way (append, drop the oldest past the cap, overwrite profile fields)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from offline_jobs.events.entries import Event


def replay(
    record: Mapping[str, Any] | None, events: Iterable[Event], max_history: int
) -> dict[str, Any]:
    """{"features", "history"} of `record` (None: no record) after `events`, in entry order."""
    record = record or {}
    features = dict(record.get("features", {}))
    history = list(record.get("history", []))
    for event in sorted(events, key=lambda e: e.entry):
        if event.positive:
            history = [*history, event.item][-max_history:]
        features.update(event.features)
    return {"features": features, "history": history}
