"""Amazon product reviews (McAuley et al.; Electronics, Books) read from the public JSON-lines
files as an `InteractionData`. Both releases load, gzip-compressed or plain:

    2014  reviews_Electronics_5.json  {"reviewerID", "asin", "overall", "unixReviewTime", ...}
          meta_Electronics.json       {'asin', 'categories': [[path], ...], 'brand', ...}
                                      (Python literals, single quotes: read with ast.literal_eval)
    2018  Electronics_5.json          {"reviewerID", "asin", "overall", "unixReviewTime", ...}
          meta_Electronics.json       {"asin", "category": [path], "brand", ...}

Every review is a sample labelled overall >= `positive_threshold`. A sample's history is the
same reviewer's positive items reviewed strictly before it (unixReviewTime has day resolution,
so same-day reviews are not history), ordered by (time, item id). Users and items get dense ids
1..M and 1..N in the sorted order of reviewerID and asin; the catalogue is the reviewed items.
An item's category is the leaf of its first category path; a missing category or brand, or an
item absent from the metadata, is the padding index 0.
"""

from __future__ import annotations

import ast
import re
from array import array
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

from offline_jobs.data.common import encode, histories_before, line_error, numbered_lines
from offline_jobs.data.dataset import InteractionData, random_split
from prerank_contract.features import FeatureSchema, FieldSpec

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"
DATASET = "Amazon"
USER_FIELDS = ("user_id",)
ITEM_FIELDS = ("item_id", "category", "brand")
# Finds a metadata line's asin without parsing it, to skip the many items nobody reviewed.
ASIN_PATTERN = re.compile(r"""["']asin["']\s*:\s*["']([^"']+)["']""")


class AmazonConfig(BaseModel):
    """Which Amazon files to read and how reviews become samples (all recorded in the manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="amazon-electronics", description="the dataset's name in manifests")
    data_dir: Path = Field(
        default=DEFAULT_DATA_ROOT / "amazon-electronics", description="folder of both files"
    )
    reviews_file: str = Field(default="reviews_Electronics_5.json.gz", description="JSON lines")
    meta_file: str = Field(default="meta_Electronics.json.gz", description="metadata lines")
    seed: int = 2022
    max_history: int = Field(default=20, ge=1)
    positive_threshold: float = Field(default=4.0, description="label = overall >= threshold")
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    validation_fraction: float = Field(default=0.1, gt=0, lt=1, description="carved from train")
    max_reviews: int | None = Field(default=None, ge=1, description="read only the first N lines")


def amazon_schema(config: AmazonConfig, vocab_sizes: dict[str, int]) -> FeatureSchema:
    """user_id, then item_id, category, brand; `vocab_sizes` counts the padding index 0."""
    fields = [FieldSpec(name=n, source="user", vocab_size=vocab_sizes[n]) for n in USER_FIELDS]
    fields += [FieldSpec(name=n, source="item", vocab_size=vocab_sizes[n]) for n in ITEM_FIELDS]
    return FeatureSchema(fields=tuple(fields), max_history=config.max_history)


def _record(line: str) -> dict[str, Any]:
    """One line as a dict: strict JSON, else a Python literal (2014 metadata); never eval."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
            raise ValueError("neither a JSON object nor a Python dict literal") from error
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, got {type(record).__name__}")
    return record


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _optional_text(value: object, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {value!r}")
    return value.strip() or None


def _leaf_category(record: dict[str, Any]) -> str | None:
    """Leaf of the first path: 2014 'categories' [[path], ...] or 2018 'category' [path]."""
    if "categories" in record:
        paths = record["categories"]
        if not isinstance(paths, list) or not all(isinstance(p, list) for p in paths):
            raise ValueError("'categories' must be a list of category paths (lists)")
        path = paths[0] if paths else []
    else:
        path = record.get("category") or []
        if not isinstance(path, list):
            raise ValueError("'category' must be a list of names")
    return _optional_text(path[-1], "category") if path else None


class _Reviews(NamedTuple):
    """Reviews as read: first-seen codes of reviewers and asins, and per-review columns."""

    user_codes: dict[str, int]
    item_codes: dict[str, int]
    users: np.ndarray  # [n] int64 user code
    items: np.ndarray  # [n] int64 item code
    overall: np.ndarray  # [n] float64
    times: np.ndarray  # [n] int64 unixReviewTime


def _read_reviews(path: Path, limit: int | None, progress: bool) -> _Reviews:
    user_codes: dict[str, int] = {}
    item_codes: dict[str, int] = {}
    users, items, times, overall = array("q"), array("q"), array("q"), array("d")
    for number, line in numbered_lines(path, DATASET, limit=limit, progress=progress):
        if not line.strip():
            continue
        try:
            record = _record(line)
            user, item = _text(record, "reviewerID"), _text(record, "asin")
            rating, time = record.get("overall"), record.get("unixReviewTime")
            if isinstance(rating, bool) or not isinstance(rating, int | float):
                raise ValueError(f"'overall' must be a number, got {rating!r}")
            if isinstance(time, bool) or not isinstance(time, int):
                raise ValueError(f"'unixReviewTime' must be an integer, got {time!r}")
        except ValueError as error:
            raise line_error(path, number, error, line) from error
        users.append(user_codes.setdefault(user, len(user_codes)))
        items.append(item_codes.setdefault(item, len(item_codes)))
        overall.append(rating)
        times.append(time)
    if not users:
        raise ValueError(f"{path}: no reviews")
    return _Reviews(
        user_codes,
        item_codes,
        np.frombuffer(users, dtype=np.int64),
        np.frombuffer(items, dtype=np.int64),
        np.frombuffer(overall, dtype=np.float64),
        np.frombuffer(times, dtype=np.int64),
    )


def _dense_ids(codes: dict[str, int]) -> np.ndarray:
    """First-seen code -> 1-based rank of its key in sorted order: [len(codes)] int64."""
    ranks = np.empty(len(codes), dtype=np.int64)
    ranks[[codes[key] for key in sorted(codes)]] = np.arange(1, len(codes) + 1)
    return ranks


def _read_meta(
    path: Path, items: dict[str, int], progress: bool
) -> dict[int, tuple[str | None, str | None]]:
    """item id -> (leaf category, brand) for the wanted asins; the first line of an asin wins."""
    found: dict[int, tuple[str | None, str | None]] = {}
    for number, line in numbered_lines(path, DATASET, progress=progress):
        match = ASIN_PATTERN.search(line)
        if not line.strip() or (match is not None and match.group(1) not in items):
            continue
        try:
            record = _record(line)
            asin = _text(record, "asin")
            features = (_leaf_category(record), _optional_text(record.get("brand"), "brand"))
        except ValueError as error:
            raise line_error(path, number, error, line) from error
        if asin in items and items[asin] not in found:
            found[items[asin]] = features
            if len(found) == len(items):
                break  # every reviewed item is described: the rest of the file is not needed
    return found


def load_amazon(config: AmazonConfig, *, progress: bool = True) -> InteractionData:
    """Read `reviews_file` and `meta_file` from `config.data_dir` into samples."""
    reviews_path = config.data_dir / config.reviews_file
    meta_path = config.data_dir / config.meta_file
    if not meta_path.is_file():  # fail before the long read of the reviews
        raise FileNotFoundError(f"{DATASET} file not found: {meta_path}")
    reviews = _read_reviews(reviews_path, config.max_reviews, progress)
    user_ids = _dense_ids(reviews.user_codes)[reviews.users]
    item_ids = _dense_ids(reviews.item_codes)[reviews.items]
    timestamps = reviews.times
    num_users, num_items = len(reviews.user_codes), len(reviews.item_codes)

    asin_ids = dict(zip(sorted(reviews.item_codes), range(1, num_items + 1), strict=True))
    meta = _read_meta(meta_path, asin_ids, progress)
    catalogue = np.arange(1, num_items + 1, dtype=np.int64)
    item_features = np.zeros((num_items + 1, len(ITEM_FIELDS)), dtype=np.int64)
    item_features[catalogue, 0] = catalogue
    described = [meta.get(int(i), (None, None)) for i in catalogue]
    vocab_sizes = {"user_id": num_users + 1, "item_id": num_items + 1}
    for column, name in enumerate(ITEM_FIELDS[1:], 1):
        item_features[catalogue, column], size = encode([d[column - 1] for d in described])
        vocab_sizes[name] = max(size, 2)  # a field no item fills still needs a valid vocabulary
    user_features = np.arange(num_users + 1, dtype=np.int64)[:, None]

    positive = reviews.overall >= config.positive_threshold
    histories, latest = histories_before(
        user_ids[positive],
        timestamps[positive],
        item_ids[positive],
        user_ids,
        timestamps,
        num_users,
        config.max_history,
    )
    n = user_ids.size
    return InteractionData(
        name=config.name,
        schema=amazon_schema(config, vocab_sizes),
        user_features=user_features,
        item_features=item_features,
        catalogue=catalogue,
        user_ids=user_ids,
        item_ids=item_ids,
        labels=positive.astype(np.float32),
        timestamps=timestamps,
        histories=histories,
        latest_histories=latest,
        splits=random_split(
            n, np.random.default_rng(config.seed), config.test_fraction, config.validation_fraction
        ),
        details={
            "config": config.model_dump(mode="json"),
            "samples": int(n),
            "positive_share": float(positive.mean()),
            "users": num_users,
            "items": num_items,
            "catalogue": num_items,
            "items_without_meta": num_items - len(meta),
        },
    )
