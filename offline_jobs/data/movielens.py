"""MovieLens 1M (GroupLens) read from its original `::`-separated files as an `InteractionData`.

    ratings.dat  UserID::MovieID::Rating::Timestamp
    users.dat    UserID::Gender::Age::Occupation::Zip-code
    movies.dat   MovieID::Title (YYYY)::Genre|Genre|...      (Latin-1)

Every rating is a sample labelled rating > `positive_threshold`; ratings equal to the threshold
(the neutral 3 by default) are dropped when `drop_neutral`. A sample's history is the same user's
positive items rated strictly before it, ordered by (timestamp, movie id), most recent last.
The loader reads whatever lines ratings.dat holds, so a partial copy (e.g. users 1-2999 only) and
the complete file both load unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from offline_jobs.data.dataset import InteractionData, random_split
from prerank_contract.features import PADDING_INDEX, FeatureSchema, FieldSpec, Source

# The project keeps data beside the repository, never in it: <repo>/../shared/data/ml-1m.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-1m"
ENCODING = "latin-1"  # movies.dat is Latin-1; users.dat and ratings.dat are ASCII, a subset
SEPARATOR = "::"
GENRE_SEPARATOR = "|"
YEAR_PATTERN = re.compile(r"\((\d{4})\)\s*$")
USER_FIELDS = ("user_id", "gender", "age", "occupation", "zip_prefix")
ITEM_FIELDS = ("item_id", "genres", "year")
TOWER_FIELDS: tuple[tuple[Source, tuple[str, ...]], ...] = (
    ("user", USER_FIELDS),
    ("item", ITEM_FIELDS),
)
Row = TypeVar("Row")


class MovieLensConfig(BaseModel):
    """Where ML-1M lies and how ratings become samples (all recorded in the manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR, description="the ml-1m folder holding ratings/users/movies.dat"
    )
    seed: int = 2022
    max_history: int = Field(default=20, ge=1)
    drop_neutral: bool = Field(default=True, description="drop ratings == positive_threshold")
    positive_threshold: int = Field(default=3, description="label = rating > positive_threshold")
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    validation_fraction: float = Field(default=0.1, gt=0, lt=1, description="carved from train")
    zip_prefix_digits: int = Field(default=2, ge=1)
    max_ratings: int | None = Field(default=None, ge=1, description="read only the first N lines")


def movielens_schema(
    config: MovieLensConfig, vocab_sizes: dict[str, int], genre_slots: int
) -> FeatureSchema:
    """User fields then item fields (item_id first); `vocab_sizes` counts the padding index 0."""
    slots = {"genres": genre_slots}
    return FeatureSchema(
        fields=tuple(
            FieldSpec(
                name=name, source=source, vocab_size=vocab_sizes[name], slots=slots.get(name, 1)
            )
            for source, names in TOWER_FIELDS
            for name in names
        ),
        max_history=config.max_history,
    )


def _parse(
    path: Path,
    n_fields: int,
    convert: Callable[[list[str]], Row],
    limit: int | None = None,
    progress: bool = False,
) -> list[Row]:
    """Each line split on `::` and converted; errors name the file and the 1-based line."""
    if not path.is_file():
        raise FileNotFoundError(f"MovieLens file not found: {path}")
    rows: list[Row] = []
    with path.open(encoding=ENCODING) as handle:
        lines = tqdm(islice(handle, limit), desc=path.name, total=limit, disable=not progress)
        for number, line in enumerate(lines, 1):
            parts = line.rstrip("\r\n").split(SEPARATOR)
            try:
                if len(parts) != n_fields:
                    raise ValueError(f"expected {n_fields} '{SEPARATOR}'-separated fields")
                rows.append(convert(parts))
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: {error}: {line.rstrip()!r}") from error
    if not rows:
        raise ValueError(f"{path}: no lines")
    return rows


def _id(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"id {value} < 1 (0 is the padding index)")
    return value


def _movie(parts: list[str]) -> tuple[int, int, list[str]]:
    year = YEAR_PATTERN.search(parts[1])
    genres = parts[2].split(GENRE_SEPARATOR)
    if year is None or not all(genres):
        raise ValueError("title must end with '(YYYY)' and genres must be non-empty")
    return _id(parts[0]), int(year.group(1)), genres


def _unique_ids(path: Path, ids: np.ndarray) -> None:
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{path}: duplicate ids {values[counts > 1][:5].tolist()}")


def _encode(values: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Raw values -> 1..V by sorted vocabulary; returns (indices, V + 1)."""
    index = {value: i for i, value in enumerate(sorted(set(values)), 1)}
    return np.array([index[v] for v in values], dtype=np.int64), len(index) + 1


def _windows(items: np.ndarray, first: np.ndarray, end: np.ndarray, length: int) -> np.ndarray:
    """Row r = items[max(first[r], end[r] - length):end[r]], left-padded: [len(end), length]."""
    columns = end[:, None] - length + np.arange(length)
    padded = np.append(items, PADDING_INDEX)  # never empty, so the clipped gather is valid
    gathered = padded[np.maximum(columns, 0)]
    return np.where(columns >= first[:, None], gathered, PADDING_INDEX).astype(np.int64)


def load_movielens_1m(config: MovieLensConfig, *, progress: bool = True) -> InteractionData:
    """Read ratings.dat, users.dat and movies.dat from `config.data_dir` into samples."""
    ratings_path = config.data_dir / "ratings.dat"
    users_path, movies_path = config.data_dir / "users.dat", config.data_dir / "movies.dat"
    movies = _parse(movies_path, 3, _movie)
    users = _parse(
        users_path,
        5,
        lambda p: (_id(p[0]), p[1], int(p[2]), int(p[3]), p[4][: config.zip_prefix_digits]),
    )
    ratings = np.array(
        _parse(
            ratings_path,
            4,
            lambda p: (_id(p[0]), _id(p[1]), int(p[2]), int(p[3])),
            config.max_ratings,
            progress,
        ),
        dtype=np.int64,
    )

    movie_ids = np.array([m[0] for m in movies], dtype=np.int64)
    user_ids_dat = np.array([u[0] for u in users], dtype=np.int64)
    _unique_ids(movies_path, movie_ids)
    _unique_ids(users_path, user_ids_dat)
    unknown = np.flatnonzero(~np.isin(ratings[:, 1], movie_ids))
    if unknown.size:
        raise ValueError(
            f"{ratings_path}, line {unknown[0] + 1}: movie id "
            f"{ratings[unknown[0], 1]} is not in {movies_path.name}"
        )

    # Items: row = movie id; item_id, genres (0-padded slots), year.
    genre_index = {g: i for i, g in enumerate(sorted({g for m in movies for g in m[2]}), 1)}
    genre_slots = max(len(m[2]) for m in movies)
    years, year_vocab = _encode([m[1] for m in movies])
    item_features = np.zeros((int(movie_ids.max()) + 1, 2 + genre_slots), dtype=np.int64)
    item_features[movie_ids, 0] = movie_ids
    item_features[movie_ids, -1] = years
    for movie_id, _, genres in movies:
        item_features[movie_id, 1 : 1 + len(genres)] = [genre_index[g] for g in genres]

    # Users: row = user id; user_id for everyone known, the profile only from users.dat.
    max_user = int(max(user_ids_dat.max(), ratings[:, 0].max()))
    user_features = np.zeros((max_user + 1, len(USER_FIELDS)), dtype=np.int64)
    vocab_sizes = {
        "user_id": max_user + 1,
        "item_id": item_features.shape[0],
        "genres": len(genre_index) + 1,
        "year": year_vocab,
    }
    for column, name in enumerate(USER_FIELDS[1:], 1):
        user_features[user_ids_dat, column], vocab_sizes[name] = _encode([u[column] for u in users])
    user_features[user_ids_dat, 0] = user_ids_dat
    user_features[ratings[:, 0], 0] = ratings[:, 0]

    # Samples, in file order.
    neutral = ratings[:, 2] == config.positive_threshold
    samples = ratings[~neutral] if config.drop_neutral else ratings
    if not samples.shape[0]:
        raise ValueError(f"{ratings_path}: no samples left after dropping neutral ratings")
    sample_users, sample_items, timestamps = samples[:, 0], samples[:, 1], samples[:, 3]
    positive = samples[:, 2] > config.positive_threshold

    # Histories: positives sorted by (user, time, movie); a sample's history ends at the first
    # positive of its user with time >= its own (searchsorted on a dense (user, time) key).
    _, time_rank = np.unique(timestamps, return_inverse=True)
    span = int(time_rank.max()) + 1
    keys = sample_users * span + time_rank.reshape(-1)
    order = np.lexsort((sample_items, keys))
    positives = order[positive[order]]
    pos_keys, pos_items = keys[positives], sample_items[positives]
    histories = _windows(
        pos_items,
        np.searchsorted(pos_keys, sample_users * span),
        np.searchsorted(pos_keys, keys),
        config.max_history,
    )
    all_users = np.arange(max_user + 1, dtype=np.int64)
    latest = _windows(
        pos_items,
        np.searchsorted(pos_keys, all_users * span),
        np.searchsorted(pos_keys, (all_users + 1) * span),
        config.max_history,
    )

    rng = np.random.default_rng(config.seed)
    n = samples.shape[0]
    return InteractionData(
        name="ml-1m",
        schema=movielens_schema(config, vocab_sizes, genre_slots),
        user_features=user_features,
        item_features=item_features,
        catalogue=np.sort(movie_ids),
        user_ids=sample_users.copy(),
        item_ids=sample_items.copy(),
        labels=positive.astype(np.float32),
        timestamps=timestamps.copy(),
        histories=histories,
        latest_histories=latest,
        splits=random_split(n, rng, config.test_fraction, config.validation_fraction),
        details={
            "config": config.model_dump(mode="json"),
            "ratings_read": int(ratings.shape[0]),
            "dropped_neutral": int(neutral.sum()) if config.drop_neutral else 0,
            "samples": int(n),
            "positive_share": float(positive.mean()),
            "users": int(np.unique(sample_users).size),
            "items": int(np.unique(sample_items).size),
            "catalogue": int(movie_ids.size),
        },
    )
