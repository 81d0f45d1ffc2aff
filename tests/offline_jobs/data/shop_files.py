"""A small shop's files, as a team would hand them over: the tiny synthetic world written with
string ids ("u-00042", "B000000017"), raw feature values, ISO-8601 times, and a spec beside them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import yaml

from offline_jobs.data.dataset import InteractionData

GENDERS = np.array(["", "F", "M"])
TAGS_PER_ITEM = 3


@dataclass(frozen=True)
class ShopFiles:
    spec: Path
    folder: Path
    users: list[str]  # raw id of internal user u at u - 1
    items: list[str]


def user_key(u: int) -> str:
    return f"u-{u:05d}"


def item_key(i: int) -> str:
    return f"B{i:09d}"


def write_table(table: pa.Table, path: Path) -> None:
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pcsv.write_csv(table, path)


def spec_document(interactions: str, users: str, items: str, **overrides: Any) -> dict[str, Any]:
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
                {"name": "tags", "type": "multi_categorical", "separator": "|", "max_values": 2},
                {"name": "price", "type": "numeric", "buckets": 5},
            ],
        },
        "history": {"length": 8},
        "split": {"kind": "temporal", "validation": 0.1, "test": 0.1},
    }
    document.update(overrides)
    return document


def write_shop(
    data: InteractionData, folder: Path, table_format: str = "parquet", **overrides: Any
) -> ShopFiles:
    """`data`'s samples, users and items as files in `folder` (`table_format` parquet or csv),
    and `folder/spec.yaml` (`overrides` replace top-level keys of the spec)."""
    folder.mkdir(parents=True, exist_ok=True)
    users = [user_key(u) for u in range(1, data.num_users + 1)]
    items = [item_key(i) for i in range(1, data.num_items + 1)]
    u, i = data.user_features, data.item_features
    user_table = pa.table(
        {
            "user_id": users,
            "gender": GENDERS[u[1:, 1]],
            "age": (u[1:, 2] * 10 + 5).astype(np.int64),
            "region": [f"r{v}" for v in u[1:, 3]],
        }
    )
    item_table = pa.table(
        {
            "item_id": items,
            "category": [f"c{v}" for v in i[1:, 1]],
            "tags": [f"b{b}|c{c}|all" for b, c in zip(i[1:, 2], i[1:, 1], strict=True)],
            "price": (i[1:, 3] * 9.99).round(2),
        }
    )
    times = [
        datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%S") for t in data.timestamps
    ]
    interactions = pa.table(
        {
            "user_id": [users[v - 1] for v in data.user_ids],
            "item_id": [items[v - 1] for v in data.item_ids],
            "ts": times,
            "clicked": data.labels.astype(np.int64),
        }
    )
    suffix = f".{table_format}"
    names = {k: f"{k}{suffix}" for k in ("interactions", "users", "items")}
    write_table(interactions, folder / names["interactions"])
    write_table(user_table, folder / names["users"])
    write_table(item_table, folder / names["items"])
    spec = folder / "spec.yaml"
    document = spec_document(names["interactions"], names["users"], names["items"], **overrides)
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    return ShopFiles(spec, folder, users, items)


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
