"""A small shop's files, as a team would hand them over: the tiny synthetic world written by
`offline_jobs.data.example` (string ids, raw values, ISO-8601 times, a spec beside them), and
smaller logs for the spec loader's error cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from offline_jobs.data.example import write_table

ROWS = 40  # interactions of the small log below: 4 users x 10 items over 40 seconds


def small_log(**columns: list[Any]) -> pa.Table:
    base: dict[str, list[Any]] = {
        "user_id": [f"u{r % 4}" for r in range(ROWS)],
        "item_id": [f"i{r % 10}" for r in range(ROWS)],
        "ts": [1_700_000_000 + r for r in range(ROWS)],
        "clicked": [r % 3 == 0 for r in range(ROWS)],
    }
    return pa.table(base | columns)


def items_table(keys: list[Any] | None = None) -> pa.Table:
    keys = keys if keys is not None else [f"i{k}" for k in range(10)]
    return pa.table({"item_id": keys, "genre": ["g"] * len(keys)})


def write_spec(folder: Path, document: dict[str, Any]) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def spec_for(
    folder: Path, log: pa.Table, *, item_table: pa.Table | None = None, **extra: Any
) -> Path:
    write_table(log, folder / "log.csv")
    document: dict[str, Any] = {
        "name": "small",
        "interactions": {
            "path": "log.csv",
            "user": "user_id",
            "item": "item_id",
            "timestamp": "ts",
            "label": "clicked",
        },
        "split": {"kind": "random", "seed": 1, "validation": 0.1, "test": 0.2},
    }
    if item_table is not None:
        write_table(item_table, folder / "items.parquet")
        document["items"] = {
            "path": "items.parquet",
            "key": "item_id",
            "features": [{"name": "genre", "type": "categorical"}],
        }
    return write_spec(folder, document | extra)
