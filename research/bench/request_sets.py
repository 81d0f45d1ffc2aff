"""The /prerank requests the benchmark sends: distinct candidate ids of one count per request,
drawn from the catalogue with a seed, and encoded in each wire format before anything is timed
(every format carries the same requests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from research.bench.wire_formats import JSON_WIRE, WIRE_FORMATS, WireFormat


@dataclass(frozen=True)
class RequestSet:
    """Requests of one candidate count, every one with the same number of `history` ids.

    user_ids [R] int64; histories [R, h] int64; candidate_ids [R, N] int64 (no body of a Python
    object per id is kept: the bodies are written per format by `encoded`)."""

    candidates: int  # ids per request
    known: int  # of them in the catalogue; the rest are ids past it (looked up, not scored)
    user_ids: np.ndarray
    histories: np.ndarray
    candidate_ids: np.ndarray

    @property
    def bodies(self) -> list[bytes]:
        """Every request's body in JSON, the default format."""
        return self.encoded(WIRE_FORMATS[JSON_WIRE])

    def encoded(self, wire: WireFormat) -> list[bytes]:
        """Every request's body in `wire`'s encoding, in order."""
        return [
            wire.encode(
                {
                    "user_id": int(user_id),
                    "history": history.tolist(),
                    "candidates": candidate_ids.tolist(),
                }
            )
            for user_id, history, candidate_ids in zip(
                self.user_ids, self.histories, self.candidate_ids, strict=True
            )
        ]


def request_set(
    catalogue: np.ndarray,
    candidates: int,
    count: int,
    history: int,
    users: int,
    rng: np.random.Generator,
) -> RequestSet:
    """`count` requests of `candidates` distinct ids each: catalogue items drawn without
    replacement, plus (when the catalogue is smaller) ids past its largest, which every target
    reports unknown. No duplicates: a duplicate would change the work."""
    known = min(candidates, catalogue.size)
    unknown_ids = catalogue.max() + 1 + np.arange(candidates - known, dtype=np.int64)
    behaviours = min(history, catalogue.size)
    user_ids = np.empty(count, dtype=np.int64)
    histories = np.empty((count, behaviours), dtype=np.int64)
    candidate_ids = np.empty((count, candidates), dtype=np.int64)
    for index in range(count):
        ids = np.concatenate([rng.choice(catalogue, size=known, replace=False), unknown_ids])
        rng.shuffle(ids)
        candidate_ids[index] = ids
        histories[index] = rng.choice(catalogue, size=behaviours, replace=False)
        user_ids[index] = rng.integers(1, max(users, 2))
    return RequestSet(candidates, known, user_ids, histories, candidate_ids)
