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
# Rows of history windows built at once: the temporaries stay a few tens of MiB however many
# samples there are (built whole, each would be as large as the result).
WINDOW_BLOCK_ROWS = 1 << 18
# Above this share of filled slots a block is gathered whole: scattering only the filled slots
# costs more per slot, and wins by far when most slots are padding (about 8x at a 7% fill).
DENSE_WINDOW_FILL = 0.5


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
    """Row r = items[max(first[r], end[r] - length):end[r]], left-padded: [len(end), length].

    Built a block of rows at a time; a block whose windows are mostly padding (users with few
    events) is scattered value by value, one mostly full is gathered whole."""
    out = np.zeros((end.size, length), dtype=np.int64)
    padded = np.append(items, PADDING_INDEX).astype(np.int64)  # never empty: the clipped gather
    for start in range(0, end.size, WINDOW_BLOCK_ROWS):
        rows = slice(start, start + WINDOW_BLOCK_ROWS)
        block_end = end[rows]
        counts = np.minimum(block_end - np.minimum(first[rows], block_end), length)
        if counts.sum() >= DENSE_WINDOW_FILL * counts.size * length:
            _gather_windows(padded, first[rows], block_end, out[rows])
        else:
            _scatter_windows(padded, block_end, counts, out[rows])
    return out


def _gather_windows(
    padded: np.ndarray, first: np.ndarray, end: np.ndarray, out: np.ndarray
) -> None:
    """`windows` of a block into `out` [rows, length] by gathering every slot."""
    columns = end[:, None] + (np.arange(out.shape[1], dtype=np.int64) - out.shape[1])
    np.take(padded, np.maximum(columns, 0), out=out)
    out[columns < first[:, None]] = PADDING_INDEX


def _scatter_windows(
    padded: np.ndarray, end: np.ndarray, counts: np.ndarray, out: np.ndarray
) -> None:
    """`windows` of a block into `out` [rows, length] (zeros) by writing only the `counts` [rows]
    items of each row, right-aligned."""
    total = int(counts.sum())
    if total == 0:
        return
    length = out.shape[1]
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    source = np.repeat(end - counts, counts) + within
    target = np.repeat((np.arange(1, end.size + 1) * length) - counts, counts) + within
    out.reshape(-1)[target] = padded[source]


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
    event_keys, sample_keys, span = user_time_keys(
        event_users, event_times, sample_users, sample_times, num_users
    )
    order = np.lexsort((event_items, event_keys))
    keys, items = event_keys[order], event_items[order]
    # Searched in key order, the samples walk the event keys once instead of jumping at random
    # (several times faster at millions of samples); the sample's user's first event comes from
    # the same order, since a key sorts its user first.
    by_key = np.argsort(sample_keys)  # equal keys have equal windows: any order of ties
    first, end = np.empty_like(sample_keys), np.empty_like(sample_keys)
    first[by_key] = np.searchsorted(keys, sample_users[by_key].astype(np.int64) * span)
    end[by_key] = np.searchsorted(keys, sample_keys[by_key])
    histories = windows(items, first, end, length)
    starts = np.searchsorted(keys, np.arange(num_users + 2, dtype=np.int64) * span)
    return histories, windows(items, starts[:-1], starts[1:], length)


def user_time_keys(
    event_users: np.ndarray,
    event_times: np.ndarray,
    sample_users: np.ndarray,
    sample_times: np.ndarray,
    num_users: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(event keys, sample keys, span): key = user * span + the time's place among all times, so
    keys sort by user, then time. The place is the time itself less the earliest when the keys
    fit int64, else its rank among the distinct times (a sort of every time, slower)."""
    event_users = event_users.astype(np.int64, copy=False)
    sample_users = sample_users.astype(np.int64, copy=False)
    event_times = event_times.astype(np.int64, copy=False)
    sample_times = sample_times.astype(np.int64, copy=False)
    present = [t for t in (event_times, sample_times) if t.size]
    lowest = min((int(t.min()) for t in present), default=0)
    highest = max((int(t.max()) for t in present), default=0)
    span = highest - lowest + 1
    if (num_users + 1) * span < np.iinfo(np.int64).max:
        return (
            event_users * span + (event_times - lowest),
            sample_users * span + (sample_times - lowest),
            span,
        )
    times = np.concatenate([event_times, sample_times])
    _, time_rank = np.unique(times, return_inverse=True)
    time_rank = time_rank.reshape(-1).astype(np.int64)
    span = int(time_rank.max(initial=0)) + 1
    if (num_users + 1) * span >= np.iinfo(np.int64).max:
        raise ValueError(f"{num_users} users x {span} distinct times overflow the history key")
    return (
        event_users * span + time_rank[: event_times.size],
        sample_users * span + time_rank[event_times.size :],
        span,
    )
