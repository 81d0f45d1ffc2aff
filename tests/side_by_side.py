"""Two independent slow steps of one test run at the same time: most of such a step is a
subprocess importing torch, starting up or waiting, which leaves the second core idle."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")


def side_by_side(first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """Run both steps, each in a thread of its own; their results once both are done. An error
    of `first`, else of `second`, is raised here."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        first_done, second_done = pool.submit(first), pool.submit(second)
    return first_done.result(), second_done.result()
