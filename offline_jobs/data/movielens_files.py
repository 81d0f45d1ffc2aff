"""Format adapters: MovieLens' original files rewritten as the Parquet tables that the shipped
dataset specs (offline_jobs/data/specs/ml-*.yaml) read, so the built-in datasets train through the
one spec loader. ``python -m offline_jobs convert movielens-1m|movielens-100k SOURCE_DIR OUT_DIR``
(`offline_jobs.data.adapters`).

    interactions.parquet  user_id, item_id, rating, timestamp               (one row per rating)
    users.parquet         user_id, gender, age, occupation, zip_prefix
    items.parquet         item_id, title, genres (a list of names), year    (null: unknown)

The derived features are the built-in loader's (`offline_jobs.data.movielens`): ML-1M's age
groups (ML-100K's raw ages bucketed into them), the zip code's first digits, the year from the
title's '(YYYY)' (ML-100K: else the release date's). Every file is read whole by pyarrow's CSV
reader, Latin-1 transcoded, ML-1M's two-character `::` replaced by one character first (the
reader splits on one): no Python loop per line.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from offline_jobs.data.common import GZIP_MAGIC
from offline_jobs.data.converted import ConvertedTables
from offline_jobs.data.movielens import (
    AGE_GROUPS,
    ENCODING,
    GENRE_SEPARATOR,
    RATINGS_SEPARATOR_100K,
    SEPARATOR,
    SEPARATOR_100K,
)

# What `::` becomes before the CSV reader splits the line: the ASCII unit separator, a control
# character that no MovieLens title holds (a line that held one would fail the field count).
ONE_CHARACTER_SEPARATOR = "\x1f"
TITLE_YEAR = r"\((?P<year>\d{4})\)\s*$"
RELEASE_YEAR = r"(?P<year>\d{4})$"  # u.item release dates: 01-Jan-1995
ZIP_PREFIX_DIGITS = 2  # the built-in protocol's `zip_prefix_digits`
RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


def read_separated(
    path: Path, columns: Sequence[str], separator: str, *, strings: Sequence[str] = ()
) -> pa.Table:
    """A headerless MovieLens file (plain or gzip, Latin-1) as a table of `columns`, those of
    `strings` as text (a zip code keeps its leading zero), the others' types inferred;
    `separator` may be longer than one character. An error names the file."""
    if not path.is_file():
        raise FileNotFoundError(f"MovieLens file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        raw = gzip.decompress(raw)
    delimiter = separator
    if len(separator) > 1:
        raw = raw.replace(separator.encode(ENCODING), ONE_CHARACTER_SEPARATOR.encode(ENCODING))
        delimiter = ONE_CHARACTER_SEPARATOR
    try:
        return pcsv.read_csv(
            pa.BufferReader(raw),
            read_options=pcsv.ReadOptions(column_names=list(columns), encoding=ENCODING),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, quote_char=False),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(strings, pa.string()), strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise ValueError(
            f"{path}: not {separator!r}-separated {', '.join(columns)}: {exc}"
        ) from exc


def ratings_table(path: Path, separator: str) -> pa.Table:
    """user_id, item_id, rating, timestamp: int64 each, in file order."""
    table = read_separated(path, RATING_COLUMNS, separator)
    return pa.table({name: pc.cast(table.column(name), pa.int64()) for name in RATING_COLUMNS})


def year_of(text: pa.ChunkedArray, pattern: str) -> pa.ChunkedArray:
    """The int64 year `pattern`'s group `year` finds in each string; null where none."""
    found = pc.struct_field(pc.extract_regex(text, pattern), [0])
    return pc.cast(found, pa.int64())


def zip_prefix(codes: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.utf8_slice_codeunits(pc.cast(codes, pa.string()), 0, ZIP_PREFIX_DIGITS)


def age_groups(ages: np.ndarray) -> np.ndarray:
    """ML-1M's age group of each raw age (`movielens.age_group`, vectorised)."""
    if ages.size and ages.min() < 0:
        raise ValueError(f"age {int(ages.min())} < 0")
    groups = np.asarray(AGE_GROUPS, dtype=np.int64)
    return groups[np.searchsorted(groups[1:], ages, side="right")]


def convert_movielens_1m(source: Path) -> ConvertedTables:
    """ratings.dat, users.dat and movies.dat of `source` as tables."""
    users = read_separated(
        source / "users.dat",
        ("user_id", "gender", "age", "occupation", "zip"),
        SEPARATOR,
        strings=("gender", "zip"),
    )
    movies = read_separated(
        source / "movies.dat",
        ("item_id", "title", "genres"),
        SEPARATOR,
        strings=("title", "genres"),
    )
    titles = pc.cast(movies.column("title"), pa.string())
    genres = pc.cast(movies.column("genres"), pa.string())
    return ConvertedTables(
        interactions=ratings_table(source / "ratings.dat", SEPARATOR),
        users=pa.table(
            {
                "user_id": pc.cast(users.column("user_id"), pa.int64()),
                "gender": pc.cast(users.column("gender"), pa.string()),
                "age": pc.cast(users.column("age"), pa.int64()),
                "occupation": pc.cast(users.column("occupation"), pa.int64()),
                "zip_prefix": zip_prefix(users.column("zip")),
            }
        ),
        items=pa.table(
            {
                "item_id": pc.cast(movies.column("item_id"), pa.int64()),
                "title": titles,
                "genres": pc.split_pattern(genres, GENRE_SEPARATOR),
                "year": year_of(titles, TITLE_YEAR),
            }
        ),
    )


def genre_names(path: Path) -> list[str]:
    """u.genre's names ordered by their flag position."""
    table = read_separated(path, ("name", "position"), SEPARATOR_100K, strings=("name",))
    positions = np.asarray(table.column("position").to_numpy(), dtype=np.int64)
    if sorted(positions.tolist()) != list(range(positions.size)):
        raise ValueError(f"{path}: flag positions must be 0..{positions.size - 1}, each once")
    names = np.asarray(table.column("name").to_pylist(), dtype=object)
    return [str(name) for name in names[np.argsort(positions)]]


def genre_lists(flags: np.ndarray, names: Sequence[str]) -> pa.ListArray:
    """flags [n, G] of 0/1 -> each row's genre names (in u.genre order) as a list column."""
    rows, columns = np.nonzero(flags)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=flags.shape[0]))])
    values = pa.array(np.asarray(names, dtype=object)[columns], type=pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), values)


def convert_movielens_100k(source: Path) -> ConvertedTables:
    """u.data, u.user, u.item and u.genre of `source` as tables (ML-1M's derived features)."""
    names = genre_names(source / "u.genre")
    item_columns = ("item_id", "title", "release", "video_release", "url")
    movies = read_separated(
        source / "u.item",
        (*item_columns, *(f"g{i}" for i in range(len(names)))),
        SEPARATOR_100K,
        strings=item_columns[1:],
    )
    flags = np.stack(
        [np.asarray(movies.column(f"g{i}").to_numpy(), np.int64) for i in range(len(names))],
        axis=1,
    )
    if not np.isin(flags, (0, 1)).all():
        raise ValueError(f"{source / 'u.item'}: genre flags must be 0 or 1")
    titles = pc.cast(movies.column("title"), pa.string())
    release = pc.cast(movies.column("release"), pa.string())
    users = read_separated(
        source / "u.user",
        ("user_id", "age", "gender", "occupation", "zip"),
        SEPARATOR_100K,
        strings=("gender", "occupation", "zip"),
    )
    ages = np.asarray(users.column("age").to_numpy(), dtype=np.int64)
    return ConvertedTables(
        interactions=ratings_table(source / "u.data", RATINGS_SEPARATOR_100K),
        users=pa.table(
            {
                "user_id": pc.cast(users.column("user_id"), pa.int64()),
                "gender": pc.cast(users.column("gender"), pa.string()),
                "age": pa.array(age_groups(ages)),
                "occupation": pc.cast(users.column("occupation"), pa.string()),
                "zip_prefix": zip_prefix(users.column("zip")),
            }
        ),
        items=pa.table(
            {
                "item_id": pc.cast(movies.column("item_id"), pa.int64()),
                "title": titles,
                "genres": genre_lists(flags, names),
                "year": pc.coalesce(year_of(titles, TITLE_YEAR), year_of(release, RELEASE_YEAR)),
            }
        ),
    )
