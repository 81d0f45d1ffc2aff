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

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from offline_jobs.data.dataset import InteractionData, left_pad, random_split
from prerank_contract.features import FeatureSchema, FieldSpec


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


def generate_synthetic(config: SyntheticConfig, *, progress: bool = True) -> InteractionData:
    """Generate the whole dataset deterministically from `config.seed`."""
    rng = np.random.default_rng(config.seed)
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

    n_events = config.events_per_user
    users, items, labels, times, histories = [], [], [], [], []
    latest = np.zeros((n_users + 1, config.max_history), dtype=np.int64)
    for user in tqdm(range(1, n_users + 1), desc="synthetic users", disable=not progress):
        age = user_features[user, 2]
        favourites = rng.choice(
            np.arange(1, n_cats + 1), size=config.favourite_categories, replace=False
        )
        preferred_brand = np.zeros(n_cats + 1, dtype=np.int64)
        preferred_price = np.full(n_cats + 1, age_price[age], dtype=np.int64)
        preferred_brand[favourites] = (favourites - 1) * bpc + rng.integers(
            1, bpc + 1, size=favourites.size
        )
        preferred_price[favourites] = rng.integers(1, config.price_levels + 1, size=favourites.size)
        drift_at = (
            rng.integers(1, n_events) if rng.random() < config.drift_probability else n_events
        )
        drifted_brand = preferred_brand.copy()
        drifted_brand[favourites] = (favourites - 1) * bpc + rng.integers(
            1, bpc + 1, size=favourites.size
        )

        def preferred_item(category: int, brands: np.ndarray, prices: np.ndarray) -> int:
            pool = items_of_brand[int(brands[category])]
            matching = pool[item_price[pool] == prices[category]]
            return int(rng.choice(matching if matching.size else pool))

        positives = [
            preferred_item(int(rng.choice(favourites)), preferred_brand, preferred_price)
            for _ in range(config.warmup_history)
        ]
        start = int(rng.integers(1_000_000, 2_000_000))
        event_times = start + np.cumsum(rng.integers(1, 3600, size=n_events))
        for step in range(n_events):
            brands = preferred_brand if step < drift_at else drifted_brand
            draw = rng.random()
            if draw < config.preferred_brand_candidate_share:
                item = preferred_item(int(rng.choice(favourites)), brands, preferred_price)
            elif draw < config.preferred_brand_candidate_share + config.favourite_candidate_share:
                item = int(rng.choice(items_of_category[int(rng.choice(favourites))]))
            else:
                item = int(rng.integers(1, n_items + 1))
            category = item_category[item]
            logit = (
                config.bias
                + config.weight_brand * (item_brand[item] == brands[category])
                + config.weight_price * (item_price[item] == preferred_price[category])
                + config.weight_category * (category in favourites)
                + config.weight_profile * affinity[age, category]
            )
            label = rng.random() < 1.0 / (1.0 + np.exp(-logit))
            users.append(user)
            items.append(item)
            labels.append(label)
            times.append(event_times[step])
            histories.append(left_pad(positives, config.max_history))
            if label:
                positives.append(item)
        latest[user] = left_pad(positives, config.max_history)

    n = len(users)
    return InteractionData(
        name="synthetic",
        schema=synthetic_schema(config),
        user_features=user_features,
        item_features=item_features,
        catalogue=np.arange(1, n_items + 1, dtype=np.int64),
        user_ids=np.asarray(users, dtype=np.int64),
        item_ids=np.asarray(items, dtype=np.int64),
        labels=np.asarray(labels, dtype=np.float32),
        timestamps=np.asarray(times, dtype=np.int64),
        histories=np.stack(histories).astype(np.int64),
        latest_histories=latest,
        splits=random_split(n, rng, config.test_fraction, config.validation_fraction),
        details={"config": config.model_dump()},
    )
