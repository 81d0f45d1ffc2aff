"""Building blocks the file loaders share: line readers, vocabularies and history windows."""

from __future__ import annotations

import gzip
import io
from collections.abc import Hashable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm

from prerank_contract.features import PADDING_INDEX

GZIP_MAGIC = b"\x1f\x8b"
QUOTED_LINE_CHARS = 200  # error messages quote at most this much of a (possibly huge) line


def open_text(path: Path, dataset: str, encoding: str = "utf-8") -> IO[str]:
    """A plain or gzip text file, told apart by its magic bytes, not its name."""
    if not path.is_file():
        raise FileNotFoundError(f"{dataset} file not found: {path}")
    with path.open("rb") as probe:
        compressed = probe.read(2) == GZIP_MAGIC
    if compressed:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding)
    return path.open(encoding=encoding)


def numbered_lines(
    path: Path,
    dataset: str,
    *,
    limit: int | None = None,
    progress: bool = False,
    encoding: str = "utf-8",
) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) for the first `limit` lines (all if None)."""
    with open_text(path, dataset, encoding) as handle:
        lines = tqdm(islice(handle, limit), desc=path.name, total=limit, disable=not progress)
        for number, line in enumerate(lines, 1):
            yield number, line.rstrip("\r\n")


def line_error(path: Path, number: int, problem: object, line: str) -> ValueError:
    """The error for one bad line: file, 1-based line number, what is wrong, the line itself."""
    quoted = line.rstrip()
    if len(quoted) > QUOTED_LINE_CHARS:
        quoted = quoted[:QUOTED_LINE_CHARS] + "..."
    return ValueError(f"{path}, line {number}: {problem}: {quoted!r}")


def encode(values: Sequence[Hashable | None]) -> tuple[np.ndarray, int]:
    """Raw values -> 1..V by sorted vocabulary, None -> PADDING_INDEX; returns (indices, V + 1)."""
    vocabulary = sorted({v for v in values if v is not None})  # type: ignore[type-var]
    index: dict[Hashable | None, int] = {value: i for i, value in enumerate(vocabulary, 1)}
    index[None] = PADDING_INDEX
    return np.array([index[v] for v in values], dtype=np.int64), len(vocabulary) + 1


def check_unique_ids(path: Path, ids: np.ndarray) -> None:
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{path}: duplicate ids {values[counts > 1][:5].tolist()}")


def windows(items: np.ndarray, first: np.ndarray, end: np.ndarray, length: int) -> np.ndarray:
    """Row r = items[max(first[r], end[r] - length):end[r]], left-padded: [len(end), length]."""
    columns = end[:, None] - length + np.arange(length)
    padded = np.append(items, PADDING_INDEX)  # never empty, so the clipped gather is valid
    gathered = padded[np.maximum(columns, 0)]
    return np.where(columns >= first[:, None], gathered, PADDING_INDEX).astype(np.int64)


def histories_before(
    event_users: np.ndarray,
    event_times: np.ndarray,
    event_items: np.ndarray,
    sample_users: np.ndarray,
    sample_times: np.ndarray,
    num_users: int,
    length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's last `length` events of its user strictly before its time, and each user's
    last `length` events overall; events ordered by (time, item), most recent last.

    Returns (histories [n_samples, length], latest [num_users + 1, length]), both int64 item ids
    left-padded with PADDING_INDEX.
    """
    # A dense (user, time) key: searchsorted on the sorted event keys finds, for each sample,
    # where its user's events at its own time or later begin.
    times = np.concatenate([event_times, sample_times])
    _, time_rank = np.unique(times, return_inverse=True)
    time_rank = time_rank.reshape(-1).astype(np.int64)
    span = int(time_rank.max(initial=0)) + 1
    if (num_users + 1) * span >= np.iinfo(np.int64).max:
        raise ValueError(f"{num_users} users x {span} distinct times overflow the history key")
    event_keys = event_users * span + time_rank[: event_times.size]
    sample_keys = sample_users * span + time_rank[event_times.size :]
    order = np.lexsort((event_items, event_keys))
    keys, items = event_keys[order], event_items[order]
    histories = windows(
        items,
        np.searchsorted(keys, sample_users * span),
        np.searchsorted(keys, sample_keys),
        length,
    )
    all_users = np.arange(num_users + 1, dtype=np.int64)
    latest = windows(
        items,
        np.searchsorted(keys, all_users * span),
        np.searchsorted(keys, (all_users + 1) * span),
        length,
    )
    return histories, latest
