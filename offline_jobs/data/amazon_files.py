"""Format adapter: Amazon's review and metadata JSON lines (2014 or 2018 release, plain or gzip)
rewritten as the Parquet tables the shipped spec reads (offline_jobs/data/specs/amazon.yaml),
``python -m offline_jobs convert amazon SOURCE_DIR OUT_DIR``:

    interactions.parquet  user_id (reviewerID), item_id (asin), rating (overall), timestamp
                          (unixReviewTime)                                  (one row per review)
    items.parquet         item_id, category, brand                  (the reviewed items only)

The derived features are the built-in loader's (`offline_jobs.data.amazon`): an item's category
is the leaf of its first category path, ids and values are stripped of surrounding whitespace,
an empty value, or an item absent from the metadata, is null; the first metadata line of an asin
wins. JSON lines are read whole by pyarrow's JSON reader, only the columns named above. The 2014
metadata is not JSON but Python literals (single quotes): its lines are read as the built-in
loader reads them (one `ast.literal_eval` per line of a reviewed item, never `eval`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pjson

from offline_jobs.data.amazon import DATASET, _read_meta
from offline_jobs.data.common import open_text
from offline_jobs.data.converted import (
    ConvertedTables,
    first_line,
    first_values,
    input_stream,
    last_values,
    rows_taken,
    sorted_unique,
    trimmed,
)

REVIEWS = pa.schema(
    [
        ("reviewerID", pa.string()),
        ("asin", pa.string()),
        ("overall", pa.float64()),
        ("unixReviewTime", pa.int64()),
    ]
)
# Both releases' keys: 2014 'categories' [[path], ...], 2018 'category' [path].
META = pa.schema(
    [
        ("asin", pa.string()),
        ("categories", pa.list_(pa.list_(pa.string()))),
        ("category", pa.list_(pa.string())),
        ("brand", pa.string()),
    ]
)
# pyarrow's JSON reader refuses a line longer than its block (1 MiB by default); the 2018
# metadata holds lines of several MiB (descriptions, HTML tables of similar items).
JSON_BLOCK_BYTES = 64 << 20
REVIEW_PATTERNS = ("reviews_*.json", "*_5.json")  # 2014, 2018 (each also .json.gz)
META_PATTERN = "meta_*.json"


def source_files(source: Path) -> tuple[Path, Path]:
    """(reviews, metadata) of one release in `source`: exactly one file of each kind."""
    if not source.is_dir():
        raise FileNotFoundError(f"{DATASET} folder not found: {source}")
    found = []
    for patterns in (REVIEW_PATTERNS, (META_PATTERN,)):
        paths = sorted({p for pattern in patterns for p in source.glob(f"{pattern}*")})
        paths = [p for p in paths if p.name.removesuffix(".gz").endswith(".json")]
        if len(paths) != 1:
            wanted = " or ".join(f"{pattern}[.gz]" for pattern in patterns)
            raise FileNotFoundError(
                f"{source}: expected one {DATASET} file {wanted}, found "
                f"{[p.name for p in paths] or 'none'} (keep one release's files per folder)"
            )
        found.append(paths[0])
    return found[0], found[1]


def read_json_lines(path: Path, schema: pa.Schema) -> pa.Table:
    """The `schema` fields of every JSON line of `path` (other fields skipped, blank lines too);
    an error names the file."""
    options = pjson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    with input_stream(path, DATASET) as stream:
        try:
            return pjson.read_json(
                stream,
                read_options=pjson.ReadOptions(block_size=JSON_BLOCK_BYTES),
                parse_options=options,
            )
        except pa.ArrowInvalid as exc:
            raise ValueError(f"{path}: not JSON lines of {', '.join(schema.names)}: {exc}") from exc


def require_values(path: Path, table: pa.Table, names: tuple[str, ...]) -> None:
    """Every record has a value in each of `names`, else an error naming the first one lacking."""
    for name in names:
        missing = pc.is_null(table.column(name)).to_numpy(zero_copy_only=False)
        if missing.any():
            record = int(np.flatnonzero(missing)[0]) + 1
            raise ValueError(
                f"{path}, line {line_of_record(path, record)}: {name!r} must be a non-empty value"
            )


def line_of_record(path: Path, record: int) -> int:
    """The 1-based line of the `record`-th non-blank line (an error path: a loop is fine)."""
    seen = 0
    with open_text(path, DATASET) as handle:
        for number, line in enumerate(handle, 1):
            seen += bool(line.strip())
            if seen == record:
                return number
    raise AssertionError(f"{path} has fewer than {record} records")


def read_reviews(path: Path) -> pa.Table:
    """user_id, item_id (stripped strings), rating, timestamp: one row per review, file order."""
    table = read_json_lines(path, REVIEWS)
    table = table.set_column(0, "reviewerID", trimmed(table.column("reviewerID")))
    table = table.set_column(1, "asin", trimmed(table.column("asin")))
    require_values(path, table, tuple(REVIEWS.names))
    if table.num_rows == 0:
        raise ValueError(f"{path}: no reviews")
    return table.rename_columns(["user_id", "item_id", "rating", "timestamp"])


def is_json_lines(path: Path) -> bool:
    """Whether the first non-blank line is a JSON object (else: Python literals, 2014 metadata)."""
    line = first_line(path, DATASET)
    try:
        return line is None or isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def read_meta(path: Path, asins: pa.Array) -> pa.Table:
    """item_id (= `asins` [m], sorted), category, brand: null where not described."""
    if not is_json_lines(path):
        return literal_meta(path, asins)
    table = read_json_lines(path, META)
    table = table.set_column(0, "asin", trimmed(table.column("asin")))
    require_values(path, table, ("asin",))
    described = table.take(rows_taken(asins, table.column("asin")))
    # 2014 records: the first of their category paths; 2018 records: their one path.
    paths = pc.if_else(
        pc.is_null(described.column("categories")),
        described.column("category"),
        first_values(described.column("categories")),
    )
    return pa.table(
        {
            "item_id": asins,
            "category": trimmed(last_values(paths)),
            "brand": trimmed(described.column("brand")),
        }
    )


def literal_meta(path: Path, asins: pa.Array) -> pa.Table:
    """`read_meta` of Python-literal lines, by the built-in loader's own reader."""
    ids = {asin: row for row, asin in enumerate(asins.to_pylist())}
    found = _read_meta(path, ids, progress=False)
    category: list[str | None] = [None] * len(ids)
    brand: list[str | None] = [None] * len(ids)
    for row, (leaf, name) in found.items():
        category[row], brand[row] = leaf, name
    return pa.table(
        {
            "item_id": asins,
            "category": pa.array(category, pa.string()),
            "brand": pa.array(brand, pa.string()),
        }
    )


def convert_amazon(source: Path) -> ConvertedTables:
    """The reviews and metadata of one release in `source` as tables."""
    reviews_path, meta_path = source_files(source)
    interactions = read_reviews(reviews_path)
    asins = sorted_unique(interactions.column("item_id"))
    return ConvertedTables(interactions=interactions, items=read_meta(meta_path, asins))
