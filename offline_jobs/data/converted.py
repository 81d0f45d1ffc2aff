"""What a format adapter writes: a dataset's original files rewritten as the interactions, users
and items Parquet tables a dataset spec reads, and the pieces the adapters share to get there
(input streams told gzip by their magic bytes, vectorised text clean-up)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from offline_jobs.data.common import GZIP_MAGIC, open_text
from offline_jobs.data.example import write_table

TABLES = ("interactions", "users", "items")


@dataclass(frozen=True)
class ConvertedTables:
    """The tables of one dataset, as written (a dataset without user features has no users
    table: its spec reads the ids alone)."""

    interactions: pa.Table
    items: pa.Table
    users: pa.Table | None = None

    def write(self, folder: Path) -> dict[str, Path]:
        """Each table as `folder/<name>.parquet` (temp + rename); name -> path."""
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for name in TABLES:
            table = getattr(self, name)
            if table is not None:
                paths[name] = folder / f"{name}.parquet"
                write_table(table, paths[name])
        return paths


def input_stream(path: Path, dataset: str) -> pa.NativeFile:
    """A plain or gzip file as a stream, told apart by its magic bytes, not its name."""
    if not path.is_file():
        raise FileNotFoundError(f"{dataset} file not found: {path}")
    with path.open("rb") as probe:
        compressed = probe.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    return pa.input_stream(path, compression="gzip" if compressed else None)


def first_line(path: Path, dataset: str) -> str | None:
    """The first non-blank line of a plain or gzip text file, without its end; None if none."""
    with open_text(path, dataset) as handle:
        for line in handle:
            if line.strip():
                return line.rstrip("\r\n")
    return None


def trimmed(text: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Each string without its surrounding whitespace, null where nothing is left."""
    stripped = pc.utf8_trim_whitespace(text)
    return pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), stripped)


def sorted_unique(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The distinct values of `column`, nulls too, sorted (a table's keys, in order)."""
    distinct = pc.unique(column)
    return distinct.take(pc.array_sort_indices(distinct))


def rows_taken(wanted: pa.Array, keys: pa.ChunkedArray | pa.Array) -> pa.Array:
    """For each of `wanted` [m] (distinct), the row of `keys` [n] that holds it first, null where
    none does: [m] int64, ready for `Table.take` (a left join on `keys`, the first row winning)."""
    position = pc.index_in(keys, value_set=wanted).fill_null(-1).to_numpy()
    rows = np.flatnonzero(position >= 0)
    found, first = np.unique(position[rows], return_index=True)
    taken = np.full(len(wanted), -1, dtype=np.int64)
    taken[found] = rows[first]
    return pa.array(taken, mask=taken < 0)


def last_values(lists: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The last value of each list [n], null where the list is null or empty."""
    return _nth_values(lists, last=True)


def first_values(lists: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The first value of each list [n], null where the list is null or empty."""
    return _nth_values(lists, last=False)


def _nth_values(lists: pa.ChunkedArray | pa.Array, *, last: bool) -> pa.Array:
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    values = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy()  # each value's list, in order
    ends = np.flatnonzero(np.diff(parents))  # a list's last value: the next one's list differs
    if parents.size == 0:
        picks = ends
    elif last:
        picks = np.append(ends, parents.size - 1)
    else:
        picks = np.insert(ends + 1, 0, 0)
    taken = np.full(len(lists), -1, dtype=np.int64)
    taken[parents[picks]] = picks
    return values.take(pa.array(taken, mask=taken < 0))
