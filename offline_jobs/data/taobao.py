"""Taobao display-ad clicks (Alibaba, Tianchi dataset 56) read from its original CSV files as an
`InteractionData`. Columns are found by header name (the real user_profile.csv header ends in
'new_user_class_level '), files may be plain or gzip-compressed:

    raw_sample.csv    user,time_stamp,adgroup_id,pid,nonclk,clk        (26M ad impressions)
    ad_feature.csv    adgroup_id,cate_id,campaign_id,customer,brand,price
    user_profile.csv  userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,
                      shopping_level,occupation,new_user_class_level
    behavior_log.csv  user,time_stamp,btag,cate,brand                  (700M behaviours, optional)

Every impression is a sample labelled clk. Users and ads get dense ids 1..M and 1..N in the
sorted order of their raw ids; the catalogue is the ads shown. Empty and 'NULL' cells are the
padding index 0, as are the profile of a user absent from user_profile.csv and the features of
an ad absent from ad_feature.csv. pid (the ad slot) is context, neither user nor item, and price
is not used.

History (a choice): the user's clicked ads strictly before the sample, ordered by (time, ad id).
Those are catalogue items, so the history the service rebuilds from the feature store matches
training exactly, and only raw_sample.csv is needed. behavior_log.csv names a category and a
brand, never an ad; with `behavior_file` set, each behaviour (any btag) joins the history as an
extra item row past the catalogue (item_id 0, its cate_id and brand). Those rows are never
candidates, and the service drops history ids outside the catalogue, so use it offline only.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from offline_jobs.data.common import (
    check_unique_ids,
    encode,
    histories_before,
    line_error,
    numbered_lines,
)
from offline_jobs.data.dataset import InteractionData, random_split
from prerank_contract.features import FeatureSchema, FieldSpec

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "taobao"
DATASET = "Taobao"
RAW_SAMPLE, AD_FEATURE, USER_PROFILE = "raw_sample.csv", "ad_feature.csv", "user_profile.csv"
RAW_COLUMNS = ("user", "time_stamp", "adgroup_id", "pid", "nonclk", "clk")
AD_COLUMNS = ("adgroup_id", "cate_id", "campaign_id", "customer", "brand", "price")
PROFILE_COLUMNS = (
    "userid",
    "cms_segid",
    "cms_group_id",
    "final_gender_code",
    "age_level",
    "pvalue_level",
    "shopping_level",
    "occupation",
    "new_user_class_level",
)
BEHAVIOR_COLUMNS = ("user", "time_stamp", "btag", "cate", "brand")
MISSING = frozenset({"", "NULL"})
USER_FIELDS = ("user_id", *PROFILE_COLUMNS[1:])
ITEM_FIELDS = ("item_id", *AD_COLUMNS[1:5])
NO_VALUE = -1  # "missing" inside int64 columns, before encoding
Attributes = tuple[int | None, ...]


class TaobaoConfig(BaseModel):
    """Where the Taobao files lie and how much of them to read (all recorded in the manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="folder of the CSV files")
    seed: int = 2022
    max_history: int = Field(default=20, ge=1)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    validation_fraction: float = Field(default=0.1, gt=0, lt=1, description="carved from train")
    max_rows: int | None = Field(
        default=None, ge=1, description="read only the first N rows of raw_sample.csv"
    )
    user_modulus: int = Field(
        default=1, ge=1, description="keep users with id % modulus == 0: whole users, fewer rows"
    )
    behavior_file: str | None = Field(
        default=None, description="e.g. behavior_log.csv: add its behaviours to histories"
    )
    behavior_max_rows: int | None = Field(
        default=None, ge=1, description="read only the first N rows of behavior_file"
    )


def taobao_schema(config: TaobaoConfig, vocab_sizes: dict[str, int]) -> FeatureSchema:
    """User fields then item fields (item_id first); `vocab_sizes` counts the padding index 0."""
    fields = [FieldSpec(name=n, source="user", vocab_size=vocab_sizes[n]) for n in USER_FIELDS]
    fields += [FieldSpec(name=n, source="item", vocab_size=vocab_sizes[n]) for n in ITEM_FIELDS]
    return FeatureSchema(fields=tuple(fields), max_history=config.max_history)


def _csv_rows(
    path: Path, columns: tuple[str, ...], limit: int | None, progress: bool
) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, line, cells of `columns` in that order) per data row; header checked."""
    lines = numbered_lines(
        path, DATASET, limit=None if limit is None else limit + 1, progress=progress
    )
    first = next(lines, None)
    if first is None:
        raise ValueError(f"{path}: empty file, expected a header")
    names = [name.strip() for name in first[1].lstrip("\ufeff").split(",")]
    missing = [c for c in columns if c not in names]
    if missing:
        raise line_error(path, 1, f"header lacks columns {missing}", first[1])
    picks = [names.index(c) for c in columns]
    for number, line in lines:
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != len(names):
            raise line_error(path, number, f"expected {len(names)} comma-separated fields", line)
        yield number, line, [cells[i] for i in picks]


def _value(cell: str) -> int | None:
    """A categorical cell: an integer, or None where empty or NULL."""
    cell = cell.strip()
    return None if cell in MISSING else int(cell)


def _read_samples(config: TaobaoConfig, path: Path, progress: bool) -> np.ndarray:
    """[n, 4] int64 rows of raw user, time_stamp, adgroup_id, clk."""
    columns = [array("q") for _ in range(4)]
    for number, line, cells in _csv_rows(path, RAW_COLUMNS, config.max_rows, progress):
        try:
            user, time, ad, clk = int(cells[0]), int(cells[1]), int(cells[2]), int(cells[5])
            if clk not in (0, 1):
                raise ValueError(f"clk must be 0 or 1, got {clk}")
        except ValueError as error:
            raise line_error(path, number, error, line) from error
        if user % config.user_modulus == 0:
            for column, value in zip(columns, (user, time, ad, clk), strict=True):
                column.append(value)
    if not columns[0]:
        raise ValueError(f"{path}: no samples (after user_modulus={config.user_modulus})")
    return np.stack([np.frombuffer(c, dtype=np.int64) for c in columns], axis=1)


def _read_attributes(
    path: Path, columns: tuple[str, ...], wanted: np.ndarray, progress: bool
) -> tuple[np.ndarray, list[Attributes]]:
    """(raw ids, their attribute columns) of the rows whose first column is in `wanted`."""
    keep = set(wanted.tolist())
    ids: list[int] = []
    rows: list[Attributes] = []
    for number, line, cells in _csv_rows(path, columns, None, progress):
        try:
            raw_id = int(cells[0])
            if raw_id in keep:
                rows.append(tuple(_value(cell) for cell in cells[1:]))
                ids.append(raw_id)
        except ValueError as error:
            raise line_error(path, number, error, line) from error
    raw_ids = np.array(ids, dtype=np.int64)
    check_unique_ids(path, raw_ids)
    return raw_ids, rows


def _fill(
    table: np.ndarray, rows: np.ndarray, values: list[Attributes], names: tuple[str, ...]
) -> dict[str, int]:
    """Encode attribute column c into `table[rows, c + 1]`; returns name -> vocabulary size."""
    sizes: dict[str, int] = {}
    for column, name in enumerate(names):
        table[rows, column + 1], size = encode([v[column] for v in values])
        sizes[name] = max(size, 2)  # a field no row fills still needs a valid vocabulary
    return sizes


def _read_behaviors(
    config: TaobaoConfig, path: Path, users: np.ndarray, progress: bool
) -> np.ndarray:
    """[n, 4] int64 rows of dense user id, time_stamp, cate, brand (NO_VALUE where missing)."""
    dense = dict(zip(users.tolist(), range(1, users.size + 1), strict=True))
    columns = [array("q") for _ in range(4)]
    for number, line, cells in _csv_rows(
        path, BEHAVIOR_COLUMNS, config.behavior_max_rows, progress
    ):
        try:
            user, time = int(cells[0]), int(cells[1])
            cate, brand = _value(cells[3]), _value(cells[4])
        except ValueError as error:
            raise line_error(path, number, error, line) from error
        if user in dense and (cate, brand) != (None, None):
            values = (dense[user], time, *(NO_VALUE if v is None else v for v in (cate, brand)))
            for column, value in zip(columns, values, strict=True):
                column.append(value)
    return np.stack([np.frombuffer(c, dtype=np.int64) for c in columns], axis=1).reshape(-1, 4)


def _user_table(
    path: Path, raw_users: np.ndarray, progress: bool
) -> tuple[np.ndarray, int, dict[str, int]]:
    """Users: row = dense id; user_id, then the profile (0 where empty or absent). Returns the
    table [users + 1, user fields], how many users have a profile, and the user fields'
    vocabulary sizes."""
    num_users = raw_users.size
    profile_ids, profiles = _read_attributes(path, PROFILE_COLUMNS, raw_users, progress)
    user_features = np.zeros((num_users + 1, len(USER_FIELDS)), dtype=np.int64)
    user_features[:, 0] = np.arange(num_users + 1)
    profile_rows = np.searchsorted(raw_users, profile_ids) + 1
    vocab_sizes = {"user_id": num_users + 1}
    vocab_sizes |= _fill(user_features, profile_rows, profiles, USER_FIELDS[1:])
    return user_features, int(profile_ids.size), vocab_sizes


def load_taobao(config: TaobaoConfig, *, progress: bool = True) -> InteractionData:
    """Read raw_sample, ad_feature and user_profile (and optionally behaviours) into samples."""
    paths = [config.data_dir / name for name in (RAW_SAMPLE, AD_FEATURE, USER_PROFILE)]
    behavior_path = None if config.behavior_file is None else config.data_dir / config.behavior_file
    for path in [*paths, *([] if behavior_path is None else [behavior_path])]:
        if not path.is_file():  # fail before the long read of raw_sample.csv
            raise FileNotFoundError(f"{DATASET} file not found: {path}")
    samples = _read_samples(config, paths[0], progress)
    raw_users, user_ids = np.unique(samples[:, 0], return_inverse=True)
    raw_ads, item_ids = np.unique(samples[:, 2], return_inverse=True)
    user_ids, item_ids = user_ids.reshape(-1) + 1, item_ids.reshape(-1) + 1
    num_users, num_items = raw_users.size, raw_ads.size
    timestamps, labels = samples[:, 1].copy(), samples[:, 3].astype(np.float32)

    user_features, profiled, vocab_sizes = _user_table(paths[2], raw_users, progress)
    vocab_sizes["item_id"] = num_items + 1

    # Items: row = dense id; item_id, cate_id, campaign_id, customer, brand. Behaviours, when
    # read, add one row per distinct (cate, brand) after the catalogue, item_id 0.
    ad_ids, ads = _read_attributes(paths[1], AD_COLUMNS[:5], raw_ads, progress)
    ad_rows = np.searchsorted(raw_ads, ad_ids) + 1
    clicked = labels == 1
    event_users, event_times, event_items = (
        user_ids[clicked],
        timestamps[clicked],
        item_ids[clicked],
    )
    behaviors_kept = extra_rows = 0
    if behavior_path is not None:
        behaviors = _read_behaviors(config, behavior_path, raw_users, progress)
        pairs, pair_index = np.unique(behaviors[:, 2:], axis=0, return_inverse=True)
        pair_rows = num_items + 1 + np.arange(pairs.shape[0])
        ad_rows = np.concatenate([ad_rows, pair_rows])
        ads += [
            tuple(None if v == NO_VALUE else v for v in (c, None, None, b))
            for c, b in pairs.tolist()
        ]
        event_users = np.concatenate([event_users, behaviors[:, 0]])
        event_times = np.concatenate([event_times, behaviors[:, 1]])
        event_items = np.concatenate([event_items, pair_rows[pair_index.reshape(-1)]])
        behaviors_kept, extra_rows = behaviors.shape[0], pairs.shape[0]
    item_features = np.zeros((num_items + 1 + extra_rows, len(ITEM_FIELDS)), dtype=np.int64)
    catalogue = np.arange(1, num_items + 1, dtype=np.int64)
    item_features[catalogue, 0] = catalogue
    vocab_sizes |= _fill(item_features, ad_rows, ads, ITEM_FIELDS[1:])

    histories, latest = histories_before(
        event_users, event_times, event_items, user_ids, timestamps, num_users, config.max_history
    )
    n = labels.size
    return InteractionData(
        name="taobao",
        schema=taobao_schema(config, vocab_sizes),
        user_features=user_features,
        item_features=item_features,
        catalogue=catalogue,
        user_ids=user_ids,
        item_ids=item_ids,
        labels=labels,
        timestamps=timestamps,
        histories=histories,
        latest_histories=latest,
        splits=random_split(
            n, np.random.default_rng(config.seed), config.test_fraction, config.validation_fraction
        ),
        details={
            "config": config.model_dump(mode="json"),
            "samples": int(n),
            "positive_share": float(labels.mean()),
            "users": int(num_users),
            "items": int(num_items),
            "catalogue": int(num_items),
            "users_without_profile": int(num_users - profiled),
            "items_without_features": int(num_items - ad_ids.size),
            "behaviors_kept": int(behaviors_kept),
            "behavior_rows": int(extra_rows),
        },
    )
