"""The embedded default dataset: a seeded synthetic world with a planted user x item interaction.

Each user has a few favourite categories and, inside each, a preferred brand and price level that
can drift once over time. The click probability is a logistic function of

    brand == the user's *current* preferred brand for the candidate's category  (history x item)
    price == the user's preferred price level for the candidate's category      (history x item)
    category in the user's favourites                                          (history x item)
    an age-group x category affinity                                           (profile x item)

The first two terms are conjunctions of the candidate's category with what the user's recent
behaviours in that category show: over 200 brands they make a user x item logit matrix of high
rank, which a d-dimensional dot product can only approximate, while a query conditioned on the
candidate's cluster (FIT's meta query + DIN) can read them off the history directly.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from offline_jobs.data.dataset import InteractionData, SampleRows, left_pad, random_split
from offline_jobs.data.stream.format import FeatureTables
from offline_jobs.data.stream.shuffle import shuffle_store
from offline_jobs.data.stream.store import SampleStore
from offline_jobs.data.stream.store_writer import SampleStoreWriter
from prerank_contract.features import FeatureSchema, FieldSpec

# Users generated together: the streaming generator holds one block of samples at a time.
USERS_PER_BLOCK = 1024


class SyntheticConfig(BaseModel):
    """Sizes and the planted preference of the synthetic world (all recorded in the manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 20250923
    num_users: int = Field(default=3000, ge=10)
    num_items: int = Field(default=5000, ge=50)
    num_categories: int = Field(default=20, ge=2)
    brands_per_category: int = Field(default=10, ge=2)
    price_levels: int = Field(default=5, ge=2)
    age_groups: int = Field(default=7, ge=1)
    regions: int = Field(default=10, ge=1)
    favourite_categories: int = Field(default=3, ge=1)
    events_per_user: int = Field(default=60, ge=2)
    warmup_history: int = Field(default=8, ge=0, description="positives before the first sample")
    max_history: int = Field(default=20, ge=1)
    drift_probability: float = Field(default=0.5, ge=0, le=1)
    favourite_candidate_share: float = Field(default=0.5, ge=0, le=1)
    preferred_brand_candidate_share: float = Field(default=0.15, ge=0, le=1)
    weight_brand: float = 2.5
    weight_price: float = 1.0
    weight_category: float = 1.0
    weight_profile: float = 1.0
    bias: float = -2.0
    test_fraction: float = Field(default=0.1, gt=0, lt=1)
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)


def synthetic_schema(config: SyntheticConfig) -> FeatureSchema:
    brands = config.num_categories * config.brands_per_category
    return FeatureSchema(
        fields=(
            FieldSpec(name="user_id", source="user", vocab_size=config.num_users + 1),
            FieldSpec(name="gender", source="user", vocab_size=3),
            FieldSpec(name="age_group", source="user", vocab_size=config.age_groups + 1),
            FieldSpec(name="region", source="user", vocab_size=config.regions + 1),
            FieldSpec(name="item_id", source="item", vocab_size=config.num_items + 1),
            FieldSpec(name="category", source="item", vocab_size=config.num_categories + 1),
            FieldSpec(name="brand", source="item", vocab_size=brands + 1),
            FieldSpec(name="price_level", source="item", vocab_size=config.price_levels + 1),
        ),
        max_history=config.max_history,
    )


@dataclass(frozen=True)
class SyntheticWorld:
    """Everything drawn before the first user's samples: the feature tables and what the click
    model reads. Built by `_draw_world`; the per-user loop (`_user_samples`) reads it.

    user_features [M+1, 4] (user_id, gender, age_group, region), item_features [N+1, 4] (item_id,
    category, brand, price_level); item_brand, item_category, item_price [N+1]; affinity
    [age_groups+1, categories+1] the profile x category term; age_price [age_groups+1] the price
    level each age group defaults to; items_of_brand / items_of_category: value -> item ids.
    """

    config: SyntheticConfig
    user_features: np.ndarray
    item_features: np.ndarray
    item_brand: np.ndarray
    item_category: np.ndarray
    item_price: np.ndarray
    items_of_brand: dict[int, np.ndarray]
    items_of_category: dict[int, np.ndarray]
    affinity: np.ndarray
    age_price: np.ndarray

    @property
    def sample_count(self) -> int:
        """Every user has `events_per_user` samples."""
        return self.config.num_users * self.config.events_per_user


def _draw_world(config: SyntheticConfig, rng: np.random.Generator) -> SyntheticWorld:
    """Items, users and the click model's tables, the first draws from `rng`."""
    n_items, n_users, n_cats = config.num_items, config.num_users, config.num_categories
    bpc = config.brands_per_category

    # Items (1-based attribute values; 0 is padding).
    n_brands = n_cats * bpc
    if n_items < n_brands:
        raise ValueError(f"num_items={n_items} < {n_brands} brands: every brand needs an item")
    # Every brand gets at least one item; brand b belongs to category (b - 1) // bpc + 1.
    item_brand = np.zeros(n_items + 1, dtype=np.int64)
    item_brand[1:] = rng.permutation(
        np.concatenate(
            [np.arange(1, n_brands + 1), rng.integers(1, n_brands + 1, size=n_items - n_brands)]
        )
    )
    item_category = (item_brand - 1) // bpc + 1
    item_price = rng.integers(1, config.price_levels + 1, size=n_items + 1)
    item_features = np.stack(
        [np.arange(n_items + 1), item_category, item_brand, item_price], axis=1
    ).astype(np.int64)
    item_features[0] = 0
    items_of_brand = {b: np.flatnonzero(item_brand[1:] == b) + 1 for b in range(1, n_brands + 1)}
    items_of_category = {
        c: np.flatnonzero(item_category[1:] == c) + 1 for c in range(1, n_cats + 1)
    }

    user_features = np.zeros((n_users + 1, 4), dtype=np.int64)
    user_features[1:, 0] = np.arange(1, n_users + 1)
    user_features[1:, 1] = rng.integers(1, 3, size=n_users)
    user_features[1:, 2] = rng.integers(1, config.age_groups + 1, size=n_users)
    user_features[1:, 3] = rng.integers(1, config.regions + 1, size=n_users)
    # Profile x category affinity and the price level each age group defaults to.
    affinity = rng.uniform(-1.0, 1.0, size=(config.age_groups + 1, n_cats + 1))
    age_price = rng.integers(1, config.price_levels + 1, size=config.age_groups + 1)
    return SyntheticWorld(
        config=config,
        user_features=user_features,
        item_features=item_features,
        item_brand=item_brand,
        item_category=item_category,
        item_price=item_price,
        items_of_brand=items_of_brand,
        items_of_category=items_of_category,
        affinity=affinity,
        age_price=age_price,
    )


def _user_samples(
    world: SyntheticWorld, user: int, rng: np.random.Generator
) -> tuple[SampleRows, np.ndarray]:
    """One user's `events_per_user` samples in time order, and the user's history after all of
    them ([1, L]); the next draws from `rng` (users are drawn in id order, so every generator of
    this module sees the same samples)."""
    config = world.config
    n_items, n_cats, bpc = config.num_items, config.num_categories, config.brands_per_category
    item_brand, item_category, item_price = world.item_brand, world.item_category, world.item_price
    n_events = config.events_per_user
    age = world.user_features[user, 2]
    favourites = rng.choice(
        np.arange(1, n_cats + 1), size=config.favourite_categories, replace=False
    )
    preferred_brand = np.zeros(n_cats + 1, dtype=np.int64)
    preferred_price = np.full(n_cats + 1, world.age_price[age], dtype=np.int64)
    preferred_brand[favourites] = (favourites - 1) * bpc + rng.integers(
        1, bpc + 1, size=favourites.size
    )
    preferred_price[favourites] = rng.integers(1, config.price_levels + 1, size=favourites.size)
    drift_at = rng.integers(1, n_events) if rng.random() < config.drift_probability else n_events
    drifted_brand = preferred_brand.copy()
    drifted_brand[favourites] = (favourites - 1) * bpc + rng.integers(
        1, bpc + 1, size=favourites.size
    )

    def preferred_item(category: int, brands: np.ndarray, prices: np.ndarray) -> int:
        pool = world.items_of_brand[int(brands[category])]
        matching = pool[item_price[pool] == prices[category]]
        return int(rng.choice(matching if matching.size else pool))

    positives = [
        preferred_item(int(rng.choice(favourites)), preferred_brand, preferred_price)
        for _ in range(config.warmup_history)
    ]
    start = int(rng.integers(1_000_000, 2_000_000))
    event_times = start + np.cumsum(rng.integers(1, 3600, size=n_events))
    items, labels, histories = [], [], []
    for step in range(n_events):
        brands = preferred_brand if step < drift_at else drifted_brand
        draw = rng.random()
        if draw < config.preferred_brand_candidate_share:
            item = preferred_item(int(rng.choice(favourites)), brands, preferred_price)
        elif draw < config.preferred_brand_candidate_share + config.favourite_candidate_share:
            item = int(rng.choice(world.items_of_category[int(rng.choice(favourites))]))
        else:
            item = int(rng.integers(1, n_items + 1))
        category = item_category[item]
        logit = (
            config.bias
            + config.weight_brand * (item_brand[item] == brands[category])
            + config.weight_price * (item_price[item] == preferred_price[category])
            + config.weight_category * (category in favourites)
            + config.weight_profile * world.affinity[age, category]
        )
        label = rng.random() < 1.0 / (1.0 + np.exp(-logit))
        items.append(item)
        labels.append(label)
        histories.append(left_pad(positives, config.max_history))
        if label:
            positives.append(item)
    rows = SampleRows(
        user_ids=np.full(n_events, user, dtype=np.int64),
        item_ids=np.asarray(items, dtype=np.int64),
        labels=np.asarray(labels, dtype=np.float32),
        timestamps=np.asarray(event_times, dtype=np.int64),
        histories=np.stack(histories).astype(np.int64),
    )
    return rows, left_pad(positives, config.max_history)[None, :]


def _user_blocks(
    world: SyntheticWorld, rng: np.random.Generator, users_per_block: int, *, progress: bool
) -> Iterator[tuple[SampleRows, np.ndarray]]:
    """The samples of users 1..M in id order, `users_per_block` users at a time, each block
    with its users' latest histories ([users, L])."""
    n_users = world.config.num_users
    with tqdm(total=n_users, desc="synthetic users", disable=not progress) as bar:
        for first in range(1, n_users + 1, users_per_block):
            last = min(first + users_per_block, n_users + 1)
            rows, latest = zip(
                *(_user_samples(world, user, rng) for user in range(first, last)), strict=True
            )
            yield SampleRows.concat(list(rows)), np.concatenate(latest)
            bar.update(last - first)


def _latest_table(world: SyntheticWorld, latest_rows: list[np.ndarray]) -> np.ndarray:
    """[M+1, L] int64: row 0 (padding) empty, then each user's latest history in id order."""
    latest = np.zeros((world.config.num_users + 1, world.config.max_history), dtype=np.int64)
    latest[1:] = np.concatenate(latest_rows)
    return latest


def _interaction_data(
    world: SyntheticWorld,
    samples: SampleRows,
    latest: np.ndarray,
    splits: dict[str, np.ndarray],
    details: dict[str, object],
) -> InteractionData:
    config = world.config
    return InteractionData(
        name="synthetic",
        schema=synthetic_schema(config),
        user_features=world.user_features,
        item_features=world.item_features,
        catalogue=np.arange(1, config.num_items + 1, dtype=np.int64),
        user_ids=samples.user_ids,
        item_ids=samples.item_ids,
        labels=samples.labels,
        timestamps=samples.timestamps,
        histories=samples.histories,
        latest_histories=latest,
        splits=splits,
        details=details,
    )


def generate_synthetic(config: SyntheticConfig, *, progress: bool = True) -> InteractionData:
    """Generate the whole dataset deterministically from `config.seed`."""
    rng = np.random.default_rng(config.seed)
    world = _draw_world(config, rng)
    blocks = list(_user_blocks(world, rng, USERS_PER_BLOCK, progress=progress))
    return _interaction_data(
        world,
        SampleRows.concat([rows for rows, _ in blocks]),
        _latest_table(world, [latest for _, latest in blocks]),
        random_split(world.sample_count, rng, config.test_fraction, config.validation_fraction),
        {"config": config.model_dump()},
    )


# Where each sample goes, in `write_synthetic_store`'s one byte per sample.
_TRAIN, _VALIDATION, _TEST = 0, 1, 2


def write_synthetic_store(
    config: SyntheticConfig,
    path: Path,
    *,
    chunk_rows: int,
    users_per_block: int = USERS_PER_BLOCK,
    shuffle: bool = True,
    progress: bool = True,
) -> tuple[SampleStore, InteractionData]:
    """The world of `generate_synthetic(config)` without its training samples in memory: the
    train split goes to a sample store at `path`, block by block of users.

    Returns the opened store and an `InteractionData` with the same tables, catalogue and latest
    histories that holds only the validation and test samples (`splits['train']` is empty): what
    evaluation, the bundle and the feature store read. The store holds exactly the samples of
    `generate_synthetic(config).splits['train']`: with `shuffle` (the default) in a uniformly
    random order seeded by `config.seed` (`shuffle_store`; users are generated one after the
    other, and the reader only shuffles within a chunk), else in that split's order, row i
    being sample `splits['train'][i]`.

    Memory: the tables, one block of users' samples, about one chunk, the held-out samples
    (`test_fraction` + `validation_fraction` of them) and, for a moment, the split's indices (8
    bytes a sample); never the training samples. Disk: the split is drawn after every sample (as
    in `generate_synthetic`, so that both draw the same split), so the samples go to scratch
    stores beside `path` first: up to twice the samples' size until it returns.
    """
    rng = np.random.default_rng(config.seed)
    world = _draw_world(config, rng)
    tables = FeatureTables(
        synthetic_schema(config), world.user_features, world.item_features, config.max_history
    )
    details: dict[str, object] = {"split": "train", "config": config.model_dump()}
    latest_rows: list[np.ndarray] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.scratch.", dir=path.parent) as scratch:
        with SampleStoreWriter(
            Path(scratch) / "all", tables, dataset="synthetic", chunk_rows=chunk_rows
        ) as writer:
            for rows, latest in _user_blocks(world, rng, users_per_block, progress=progress):
                writer.append(rows)
                latest_rows.append(latest)
            everything = writer.commit()
        splits = random_split(
            world.sample_count, rng, config.test_fraction, config.validation_fraction
        )
        assignment = np.full(world.sample_count, _TRAIN, dtype=np.uint8)
        assignment[splits["validation"]] = _VALIDATION
        assignment[splits["test"]] = _TEST
        del splits
        held_out: list[SampleRows] = []
        in_split_order = Path(scratch) / "train" if shuffle else path
        with SampleStoreWriter(
            in_split_order, tables, dataset="synthetic", chunk_rows=chunk_rows, details=details
        ) as train_writer:
            for chunk in range(everything.num_chunks):
                start, stop = everything.chunk_bounds(chunk)
                rows = everything.read_rows(start, stop)
                where = assignment[start:stop]
                train_writer.append(rows.take(np.flatnonzero(where == _TRAIN)))
                held_out.append(rows.take(np.flatnonzero(where != _TRAIN)))
            store = train_writer.commit()
        shutil.rmtree(everything.path)
        if shuffle:
            store = shuffle_store(store, path, config.seed)
    held_assignment = assignment[assignment != _TRAIN]
    data = _interaction_data(
        world,
        SampleRows.concat(held_out),
        _latest_table(world, latest_rows),
        {
            "train": np.zeros(0, dtype=np.int64),
            "validation": np.flatnonzero(held_assignment == _VALIDATION),
            "test": np.flatnonzero(held_assignment == _TEST),
        },
        {"config": config.model_dump(), "train_store": str(path), "train_rows": store.rows},
    )
    return store, data
