"""A worked example of a team's own files: the synthetic world written as a small shop would hand
its data over (string user ids "u-00042", string item ids "B000000017", raw profile and item
values, ISO-8601 times) with the dataset spec beside them. `python -m offline_jobs example DIR`
writes it; `run --dataset DIR/spec.yaml` trains on it through the same loader as any spec."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import yaml

from offline_jobs.data.dataset import InteractionData

TableFormat = Literal["parquet", "csv"]
GENDERS = np.array(["", "F", "M"])  # by the synthetic gender index; "" is a missing value
AGE_STEP, AGE_OFFSET = 10, 5  # the synthetic age bucket b as an age in years: 10 b + 5
PRICE_STEP = 9.99  # the synthetic price level p as a price: 9.99 p
TAGS_PER_ITEM = 2  # of the three tags written (brand, category, "all"), the spec keeps two


@dataclass(frozen=True)
class ExampleFiles:
    """Where the files went, and the raw id of every internal user and item (u at u - 1)."""

    spec: Path
    folder: Path
    users: list[str]
    items: list[str]


def user_key(user: int) -> str:
    return f"u-{user:05d}"


def item_key(item: int) -> str:
    return f"B{item:09d}"


def write_table(table: pa.Table, path: Path) -> None:
    """A table as Parquet or CSV, by the path's suffix, via temp + rename."""
    partial = path.with_name(f".{path.name}.partial")
    if path.suffix == ".parquet":
        pq.write_table(table, partial)
    else:
        pcsv.write_csv(table, partial)
    partial.replace(path)


def spec_document(interactions: str, users: str, items: str, **overrides: Any) -> dict[str, Any]:
    """The example's dataset spec (`overrides` replace top-level keys)."""
    document: dict[str, Any] = {
        "name": "shop",
        "interactions": {
            "path": interactions,
            "user": "user_id",
            "item": "item_id",
            "timestamp": "ts",
            "label": "clicked",
        },
        "users": {
            "path": users,
            "key": "user_id",
            "features": [
                {"name": "gender", "type": "categorical"},
                {"name": "age", "type": "numeric", "buckets": 4},
                {"name": "region", "type": "categorical"},
            ],
        },
        "items": {
            "path": items,
            "key": "item_id",
            "features": [
                {"name": "category", "type": "categorical"},
                {
                    "name": "tags",
                    "type": "multi_categorical",
                    "separator": "|",
                    "max_values": TAGS_PER_ITEM,
                },
                {"name": "price", "type": "numeric", "buckets": 5},
            ],
        },
        "history": {"length": 8},
        "split": {"kind": "temporal", "validation": 0.1, "test": 0.1},
    }
    document.update(overrides)
    return document


def write_example(
    data: InteractionData, folder: Path, table_format: TableFormat = "parquet", **overrides: Any
) -> ExampleFiles:
    """`data` (the synthetic world: its feature columns are read by position) as a shop's files
    in `folder`, and `folder/spec.yaml` (`overrides` replace top-level keys of the spec)."""
    folder.mkdir(parents=True, exist_ok=True)
    users = [user_key(u) for u in range(1, data.num_users + 1)]
    items = [item_key(i) for i in range(1, data.num_items + 1)]
    u, i = data.user_features, data.item_features
    user_table = pa.table(
        {
            "user_id": users,
            "gender": GENDERS[u[1:, 1]],
            "age": (u[1:, 2] * AGE_STEP + AGE_OFFSET).astype(np.int64),
            "region": [f"r{v}" for v in u[1:, 3]],
        }
    )
    item_table = pa.table(
        {
            "item_id": items,
            "category": [f"c{v}" for v in i[1:, 1]],
            "tags": [f"b{b}|c{c}|all" for b, c in zip(i[1:, 2], i[1:, 1], strict=True)],
            "price": (i[1:, 3] * PRICE_STEP).round(2),
        }
    )
    times = [
        datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%S") for t in data.timestamps
    ]
    user_keys, item_keys = np.array(users), np.array(items)
    interactions = pa.table(
        {
            "user_id": user_keys[data.user_ids - 1],
            "item_id": item_keys[data.item_ids - 1],
            "ts": times,
            "clicked": data.labels.astype(np.int64),
        }
    )
    names = {name: f"{name}.{table_format}" for name in ("interactions", "users", "items")}
    write_table(interactions, folder / names["interactions"])
    write_table(user_table, folder / names["users"])
    write_table(item_table, folder / names["items"])
    spec = folder / "spec.yaml"
    document = spec_document(names["interactions"], names["users"], names["items"], **overrides)
    partial = folder / ".spec.yaml.partial"
    partial.write_text(yaml.safe_dump(document, sort_keys=False))
    partial.replace(spec)
    return ExampleFiles(spec, folder, users, items)
