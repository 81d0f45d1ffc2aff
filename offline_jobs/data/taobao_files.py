"""Format adapter: Taobao's display-ad CSV files (Tianchi dataset 56, plain or gzip) rewritten as
the Parquet tables the shipped spec reads (offline_jobs/data/specs/taobao.yaml),
``python -m offline_jobs convert taobao SOURCE_DIR OUT_DIR``:

    interactions.parquet  user_id (user), item_id (adgroup_id), clk, timestamp (time_stamp)
                                                                   (one row per impression)
    users.parquet         user_id, cms_segid .. new_user_class_level  (the users shown an ad)
    items.parquet         item_id, cate_id, campaign_id, customer, brand     (the ads shown)

As the built-in loader (`offline_jobs.data.taobao`) reads them: columns found by their header
name (user_profile.csv's ends in a space), empty and 'NULL' cells missing, a user without a
profile or an ad without features present with every feature null, pid and price unused; an id
twice among the users or ads kept is refused. behavior_log.csv (the built-in loader's optional
`behavior_file`, whose rows are no ads) has no place in the tables. Each file is read whole by
pyarrow's CSV reader: no Python loop per row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from offline_jobs.data.common import check_unique_ids
from offline_jobs.data.converted import (
    ConvertedTables,
    first_line,
    input_stream,
    rows_taken,
    sorted_unique,
)
from offline_jobs.data.tabular import require_present
from offline_jobs.data.taobao import (
    AD_COLUMNS,
    AD_FEATURE,
    DATASET,
    ITEM_FIELDS,
    MISSING,
    PROFILE_COLUMNS,
    RAW_SAMPLE,
    USER_FIELDS,
    USER_PROFILE,
)

# raw_sample.csv's columns a sample needs -> their names in the interactions table
SAMPLE_COLUMNS = {
    "user": "user_id",
    "adgroup_id": "item_id",
    "clk": "clk",
    "time_stamp": "timestamp",
}
BYTE_ORDER_MARK = "\ufeff"


def header(path: Path, wanted: tuple[str, ...]) -> list[str]:
    """The column names of a CSV's first line, stripped; an error names a wanted one missing."""
    first = first_line(path, DATASET)
    if first is None:
        raise ValueError(f"{path}: empty file, expected a header")
    names = [name.strip() for name in first.lstrip(BYTE_ORDER_MARK).split(",")]
    missing = [name for name in wanted if name not in names]
    if missing:
        raise ValueError(f"{path}, line 1: header lacks columns {missing}: {first!r}")
    return names


def read_columns(path: Path, wanted: tuple[str, ...]) -> pa.Table:
    """`wanted` columns of a headed CSV as int64, null where a cell is empty or 'NULL'."""
    names = header(path, wanted)
    with input_stream(path, DATASET) as stream:
        try:
            table = pcsv.read_csv(
                stream,
                read_options=pcsv.ReadOptions(column_names=names, skip_rows=1),
                convert_options=pcsv.ConvertOptions(
                    include_columns=list(wanted),
                    column_types=dict.fromkeys(wanted, pa.int64()),
                    null_values=sorted(MISSING),
                ),
            )
        except pa.ArrowInvalid as exc:
            raise ValueError(f"{path}: not CSV of integer {', '.join(wanted)}: {exc}") from exc
    return table.select(list(wanted))


def read_samples(path: Path) -> pa.Table:
    """user_id, item_id, clk, timestamp: one row per impression, file order, every cell given
    (rows counted after the header), clk 0 or 1."""
    table = read_columns(path, tuple(SAMPLE_COLUMNS))
    for name in SAMPLE_COLUMNS:
        require_present(path, name, table.column(name))
    if table.num_rows == 0:
        raise ValueError(f"{path}: no samples")
    clicks = table.column("clk").to_numpy()
    if not np.isin(clicks, (0, 1)).all():
        row = int(np.flatnonzero(~np.isin(clicks, (0, 1)))[0]) + 1
        raise ValueError(f"{path}, column 'clk', row {row}: {clicks[row - 1]}, not 0 or 1")
    return table.rename_columns(list(SAMPLE_COLUMNS.values()))


def attributes(
    path: Path, columns: tuple[str, ...], fields: tuple[str, ...], ids: pa.Array
) -> pa.Table:
    """One row per id of `ids` [m]: the id, then `columns[1:]` (renamed `fields[1:]`) of the row
    whose first column holds it, null where none does; an id in two rows is refused."""
    table = read_columns(path, columns)
    keys = table.column(columns[0])
    kept = pc.is_in(keys, value_set=ids)
    check_unique_ids(path, keys.filter(kept).to_numpy())
    rows = table.take(rows_taken(ids, keys)).rename_columns(list(fields))
    return rows.set_column(0, fields[0], ids)


def convert_taobao(source: Path) -> ConvertedTables:
    """raw_sample, ad_feature and user_profile of `source` as tables."""
    samples = read_samples(source / RAW_SAMPLE)
    users, ads = (sorted_unique(samples.column(name)) for name in ("user_id", "item_id"))
    return ConvertedTables(
        interactions=samples,
        users=attributes(source / USER_PROFILE, PROFILE_COLUMNS, USER_FIELDS, users),
        items=attributes(source / AD_FEATURE, AD_COLUMNS[: len(ITEM_FIELDS)], ITEM_FIELDS, ads),
    )
