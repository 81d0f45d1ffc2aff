"""`service.ranking`'s candidate bookkeeping against a plain Python reference."""

from __future__ import annotations

import numpy as np
import pytest

from service.ranking import first_occurrences


def reference(keys: list[int]) -> tuple[list[int], list[int]]:
    """(first positions in first-seen order, first positions of repeated keys in key order)."""
    first: dict[int, int] = {}
    for position, key in enumerate(keys):
        first.setdefault(key, position)
    repeated = sorted(key for key in first if keys.count(key) > 1)
    return list(first.values()), [first[key] for key in repeated]


@pytest.mark.parametrize(
    "keys",
    [
        [],
        [7],
        [5, 3, 9, 1],  # no repeats: the sort-only path
        [5, 3, 5, 1, 3, 3],
        [-1, 4, -2, -1, 4],  # unknown ids' negative keys
        [2, 2, 2],
        [5, 5 + 2**32, 7],  # equal in their low 32 bits: still distinct
        [2**31 - 1, -(2**31), 2**31 - 1],  # the int32 bounds themselves
        [2**40, 3, 2**40],
    ],
)
def test_first_occurrences(keys: list[int]) -> None:
    positions, repeated = first_occurrences(np.asarray(keys, dtype=np.int64))
    expected_positions, expected_repeated = reference(keys)
    assert positions.tolist() == expected_positions
    assert repeated.tolist() == expected_repeated
    assert positions.dtype.kind == repeated.dtype.kind == "i"


def test_first_occurrences_many_random() -> None:
    rng = np.random.default_rng(0)
    for size in (10, 1_000):
        keys = rng.integers(0, size, size)  # about a third repeated
        positions, repeated = first_occurrences(keys)
        expected_positions, expected_repeated = reference(keys.tolist())
        assert positions.tolist() == expected_positions
        assert repeated.tolist() == expected_repeated
