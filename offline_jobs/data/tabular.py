"""Reading a spec's tables with pyarrow, and the checks whose messages name the file, the column
and the row (1-based, counting data rows: a CSV's header line is not a row).

pyarrow reads Parquet and CSV/TSV (gzip too) into columns without a Python loop per row, and its
compute kernels (`index_in`, `value_counts`, `split_pattern`) do the encoding the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

# An integer id written in canonical form: CSV ids that match are read as integers, others
# (leading zeros, letters) stay strings, so "0123456789" never loses its zero.
CANONICAL_INTEGER = r"^(0|-?[1-9][0-9]{0,17})$"
QUOTED_VALUE_CHARS = 80  # error messages quote at most this much of a value


def read_table(path: Path, columns: Sequence[str], *, strings: Sequence[str] = ()) -> pa.Table:
    """`columns` of the table at `path` (.parquet, .csv, .tsv, each optionally .gz); a column of
    `strings` is read from a CSV as text first (see `CANONICAL_INTEGER`)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    wanted = list(dict.fromkeys(columns))
    if path.name.removesuffix(".gz").endswith(".parquet"):
        source = _parquet_source(path)
        available = pq.read_schema(source).names
        _check_columns(path, wanted, available)
        return pq.read_table(source, columns=wanted)
    delimiter = "\t" if path.name.removesuffix(".gz").endswith(".tsv") else ","
    try:
        table = pcsv.read_csv(
            path,
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in strings},
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise ValueError(
            f"{path}: cannot be read as {delimiter!r}-separated values: {exc}"
        ) from exc
    _check_columns(path, wanted, table.column_names)
    table = table.select(wanted)
    for name in strings:
        table = table.set_column(
            table.column_names.index(name), name, integers_where_canonical(table.column(name))
        )
    return table


def _parquet_source(path: Path) -> Path | pa.BufferReader:
    """A Parquet file, or the bytes of a gzip-compressed one (Parquet seeks: it cannot stream)."""
    if path.name.endswith(".gz"):
        with pa.input_stream(path, compression="gzip") as stream:
            return pa.BufferReader(stream.read())
    return path


def _check_columns(path: Path, wanted: Sequence[str], available: Sequence[str]) -> None:
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ValueError(
            f"{path}: no column {', '.join(map(repr, missing))} (columns: {', '.join(available)})"
        )


def integers_where_canonical(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text id column as int64 when every value is a canonical integer, else as it is."""
    present = pc.drop_null(column)
    if len(present) and pc.all(pc.match_substring_regex(present, CANONICAL_INTEGER)).as_py():
        return pc.cast(column, pa.int64())
    return column


def first_row(mask: np.ndarray) -> int:
    """The 1-based row of the first True of `mask`."""
    return int(np.flatnonzero(mask)[0]) + 1


def quoted(value: object) -> str:
    text = repr(value)
    return text if len(text) <= QUOTED_VALUE_CHARS else text[:QUOTED_VALUE_CHARS] + "..."


def require_present(path: Path, name: str, column: pa.ChunkedArray) -> None:
    """Every row has a value in `name`."""
    nulls = np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False))
    if nulls.any():
        raise ValueError(f"{path}, column {name!r}, row {first_row(nulls)}: no value")


def id_column(path: Path, name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    """An id column as int64 or string, every row present."""
    require_present(path, name, column)
    if pa.types.is_integer(column.type):
        return pc.cast(column, pa.int64())
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return pc.cast(column, pa.string())
    raise ValueError(f"{path}, column {name!r}: ids must be integers or strings, not {column.type}")


def same_id_types(
    a: pa.ChunkedArray, a_where: str, b: pa.ChunkedArray, b_where: str
) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Two id columns that must match: equal types, or a clear error naming both."""
    if a.type != b.type:
        raise ValueError(
            f"{a_where} holds {_kind(a)} ids but {b_where} holds {_kind(b)} ids: write them alike"
        )
    return a, b


def _kind(column: pa.ChunkedArray) -> str:
    return "integer" if pa.types.is_integer(column.type) else "string"


def unique_keys(path: Path, name: str, keys: pa.ChunkedArray) -> None:
    """No key of a users or items table twice."""
    counts = pc.value_counts(keys)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated):
        value = repeated.field("values")[0].as_py()
        rows = np.flatnonzero(np.asarray(pc.equal(keys, value).to_numpy(zero_copy_only=False)))
        raise ValueError(
            f"{path}, column {name!r}: key {quoted(value)} appears {len(rows)} times "
            f"(rows {', '.join(str(r + 1) for r in rows[:5])}); keys must be unique"
        )


def timestamps(path: Path, name: str, column: pa.ChunkedArray) -> np.ndarray:
    """[n] int64: integers as they are (seconds or milliseconds: only their order matters),
    ISO-8601 text or Arrow timestamps as milliseconds since the epoch."""
    require_present(path, name, column)
    if pa.types.is_integer(column.type):
        return np.asarray(pc.cast(column, pa.int64()).to_numpy(), dtype=np.int64)
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        millis = pc.cast(pc.cast(column, pa.timestamp("ms")), pa.int64())
        return np.asarray(millis.to_numpy(), dtype=np.int64)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise ValueError(f"{path}, column {name!r}: timestamps must be integers or ISO-8601 text")
    for target in (pa.timestamp("ms"), pa.timestamp("ms", tz="UTC")):
        try:
            parsed = pc.cast(column, target)
        except pa.ArrowInvalid:
            continue
        return np.asarray(pc.cast(parsed, pa.int64()).to_numpy(), dtype=np.int64)
    row, value = _first_unparsed(column)
    raise ValueError(
        f"{path}, column {name!r}, row {row}: {quoted(value)} is not an ISO-8601 time "
        "(nor are integer seconds or milliseconds given)"
    )


def _first_unparsed(column: pa.ChunkedArray) -> tuple[int, object]:
    """The first value no timestamp cast accepts (an error path: a loop is fine here)."""
    for row, value in enumerate(column.to_pylist(), 1):
        for target in (pa.timestamp("ms"), pa.timestamp("ms", tz="UTC")):
            try:
                pc.cast(pa.array([value]), target)
                break
            except pa.ArrowInvalid:
                continue
        else:
            return row, value
    raise AssertionError("a cast failed on the column but on none of its values")


def binary_labels(path: Path, name: str, column: pa.ChunkedArray) -> np.ndarray:
    """[n] float32 in {0, 1}; any other value is refused with its row."""
    require_present(path, name, column)
    try:
        values = as_float_array(column)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{path}, column {name!r}: labels must be 0 or 1 ({exc})") from exc
    wrong = (values != 0) & (values != 1)
    if wrong.any():
        row = first_row(wrong)
        raise ValueError(
            f"{path}, column {name!r}, row {row}: label {quoted(column[row - 1].as_py())}, "
            "labels must be 0 or 1"
        )
    return values.astype(np.float32)


def as_float_array(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_boolean(column.type):
        column = pc.cast(column, pa.int8())
    return np.asarray(pc.cast(column, pa.float64()).to_numpy(), dtype=np.float64)
