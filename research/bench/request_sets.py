"""The /prerank bodies the benchmark sends: distinct candidate ids of one count per body, drawn
from the catalogue with a seed and encoded once, before anything is timed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson


@dataclass(frozen=True)
class RequestSet:
    """Pre-encoded /prerank bodies of one candidate count, every one with `history` ids."""

    candidates: int  # ids per request
    known: int  # of them in the catalogue; the rest are ids past it (looked up, not scored)
    bodies: list[bytes]


def request_set(
    catalogue: np.ndarray,
    candidates: int,
    count: int,
    history: int,
    users: int,
    rng: np.random.Generator,
) -> RequestSet:
    """`count` bodies of `candidates` distinct ids each: catalogue items drawn without
    replacement, plus (when the catalogue is smaller) ids past its largest, which every target
    reports unknown. No duplicates: a duplicate would change the work."""
    known = min(candidates, catalogue.size)
    unknown_ids = catalogue.max() + 1 + np.arange(candidates - known, dtype=np.int64)
    bodies = []
    for _ in range(count):
        ids = np.concatenate([rng.choice(catalogue, size=known, replace=False), unknown_ids])
        rng.shuffle(ids)
        behaviours = rng.choice(catalogue, size=min(history, catalogue.size), replace=False)
        body = {
            "user_id": int(rng.integers(1, max(users, 2))),
            "history": behaviours.tolist(),
            "candidates": ids.tolist(),
        }
        bodies.append(orjson.dumps(body))
    return RequestSet(candidates, known, bodies)
