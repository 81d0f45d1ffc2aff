"""MovieLens (GroupLens) 1M and 100K read from their original files as an `InteractionData`,
both under one protocol and one schema.

    ML-1M    ratings.dat  UserID::MovieID::Rating::Timestamp
             users.dat    UserID::Gender::Age::Occupation::Zip-code
             movies.dat   MovieID::Title (YYYY)::Genre|Genre|...                  (Latin-1)
    ML-100K  u.data       user id<TAB>item id<TAB>rating<TAB>timestamp
             u.user       user id|age|gender|occupation|zip code
             u.item       movie id|title|release date|video release date|IMDb URL|19 genre
                          flags (0/1, in u.genre order)                         (Latin-1)
             u.genre      genre|flag position

Every rating is a sample labelled rating > `positive_threshold`; ratings equal to the threshold
(the neutral 3 by default) are dropped when `drop_neutral`. A sample's history is the same user's
positive items rated strictly before it, ordered by (timestamp, movie id), most recent last.
The loaders read whatever lines the ratings file holds, so a partial copy (e.g. ML-1M's users
1-2999 only) and the complete file both load unchanged.

ML-100K is made to look like ML-1M: its raw ages are bucketed into ML-1M's age groups (1: <18,
18: 18-24, 25: 25-34, 35: 35-44, 45: 45-49, 50: 50-55, 56: 56+), its occupation is a name where
ML-1M's is a code (both become a sorted vocabulary), zip codes may be non-numeric ('T8H1N'), and a
movie's year is the title's '(YYYY)', else the release date's year, else the padding index (as in
ML-1M, the year the film came out: 190 release dates are later re-releases). Its 'unknown' genre
stays a genre; it sorts after the 18 genres both releases share, which keep ML-1M's indices.

`mean_rating_features` (off by default) adds IntTower's (CIKM'22) leaky per-user and per-item mean
ratings, as the fields `user_mean_rating` and `item_mean_rating` after all others: a sample's value
is the mean rating of its user's (item's) samples in the sample's own split (train, validation and
test each on their own), so a test sample's feature is computed from the test labels. As in
IntTower's train_movielens_IntTower.py, which drops the neutral rating before its split and its
means, the means run over the samples kept after `drop_neutral`. Two departures from that script:
it averages the already-binarised label (the share of positives), where this averages the star
ratings, bucketed by half stars (round half up of 2 * mean, so 1.0..5.0 -> 2..10; 0 = padding);
and its validation (the last 20% of its train split) reads the train split's means, where here
validation has its own. The values exist only per sample (`InteractionData.sample_*_features`):
the user and item tables hold padding in these columns, so histories, the precomputed catalogue
and the feature store never carry them, and a model trained with them is for the offline results
table only, never to be served (online it would only ever see padding).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

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
from prerank_contract.features import FeatureSchema, FieldSpec, Source

# The project keeps data beside the repository, never in it: <repo>/../shared/data/ml-1m.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-1m"
DEFAULT_100K_DATA_DIR = DEFAULT_DATA_DIR.with_name("ml-100k")
DATASET = "MovieLens"
ENCODING = "latin-1"  # movies.dat and u.item are Latin-1; the other files are ASCII, a subset
SEPARATOR = "::"
SEPARATOR_100K = "|"  # u.user, u.item, u.genre
RATINGS_SEPARATOR_100K = "\t"  # u.data
GENRE_SEPARATOR = "|"
YEAR_PATTERN = re.compile(r"\((\d{4})\)\s*$")
RELEASE_YEAR_PATTERN = re.compile(r"(\d{4})$")  # u.item release dates: 01-Jan-1995
# Star ratings are 1..5; mean-rating buckets are half stars, 0 the padding.
MAX_RATING = 5
MEAN_RATING_VOCAB = 2 * MAX_RATING + 1
MEAN_RATING_FIELDS: dict[Source, str] = {"user": "user_mean_rating", "item": "item_mean_rating"}
# ML-1M's age groups, each named by its lowest age (1 stands for "under 18").
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)
USER_FIELDS = ("user_id", "gender", "age", "occupation", "zip_prefix")
ITEM_FIELDS = ("item_id", "genres", "year")
TOWER_FIELDS: tuple[tuple[Source, tuple[str, ...]], ...] = (
    ("user", USER_FIELDS),
    ("item", ITEM_FIELDS),
)
Row = TypeVar("Row")
# user id, gender, age group, occupation (ML-1M code or ML-100K name), zip prefix
UserRow = tuple[int, str, int, int | str, str]
# movie id, year (None: unknown), genre names
MovieRow = tuple[int, int | None, list[str]]


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
    mean_rating_features: bool = Field(
        default=False,
        description="IntTower's leaky split-wise user and item mean ratings (offline table only)",
    )


class MovieLens100KConfig(MovieLensConfig):
    """Where ML-100K lies; every other field is ML-1M's protocol, with the same defaults."""

    data_dir: Path = Field(
        default=DEFAULT_100K_DATA_DIR,
        description="the ml-100k folder holding u.data/u.user/u.item/u.genre",
    )


def movielens_schema(
    config: MovieLensConfig, vocab_sizes: dict[str, int], genre_slots: int
) -> FeatureSchema:
    """User fields then item fields (item_id first), each side ending in its mean-rating field
    when `config.mean_rating_features`; `vocab_sizes` counts the padding index 0."""
    slots = {"genres": genre_slots}
    towers = TOWER_FIELDS
    if config.mean_rating_features:
        towers = tuple((source, (*names, MEAN_RATING_FIELDS[source])) for source, names in towers)
    return FeatureSchema(
        fields=tuple(
            FieldSpec(
                name=name, source=source, vocab_size=vocab_sizes[name], slots=slots.get(name, 1)
            )
            for source, names in towers
            for name in names
        ),
        max_history=config.max_history,
    )


def _parse(
    path: Path,
    separator: str,
    n_fields: int,
    convert: Callable[[list[str]], Row],
    limit: int | None = None,
    progress: bool = False,
    skip_blank: bool = False,
) -> list[Row]:
    """Each line split on `separator` and converted; errors name the file and the 1-based line."""
    rows: list[Row] = []
    lines = numbered_lines(path, DATASET, limit=limit, progress=progress, encoding=ENCODING)
    for number, line in lines:
        if skip_blank and not line.strip():
            continue
        parts = line.split(separator)
        try:
            if len(parts) != n_fields:
                raise ValueError(f"expected {n_fields} {separator!r}-separated fields")
            rows.append(convert(parts))
        except ValueError as error:
            raise line_error(path, number, error, line) from error
    if not rows:
        raise ValueError(f"{path}: no lines")
    return rows


def _id(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"id {value} < 1 (0 is the padding index)")
    return value


def _ratings(path: Path, separator: str, config: MovieLensConfig, progress: bool) -> np.ndarray:
    """[n, 4] int64 (user id, movie id, rating, timestamp) in file order."""
    rows = _parse(
        path,
        separator,
        4,
        lambda p: (_id(p[0]), _id(p[1]), int(p[2]), int(p[3])),
        config.max_ratings,
        progress,
    )
    return np.array(rows, dtype=np.int64)


def _movie(parts: list[str]) -> MovieRow:
    year = YEAR_PATTERN.search(parts[1])
    genres = parts[2].split(GENRE_SEPARATOR)
    if year is None or not all(genres):
        raise ValueError("title must end with '(YYYY)' and genres must be non-empty")
    return _id(parts[0]), int(year.group(1)), genres


def age_group(age: int) -> int:
    """ML-1M's age group of a raw age: 17 -> 1, 18..24 -> 18, ..., 50..55 -> 50, 56+ -> 56."""
    if age < 0:
        raise ValueError(f"age {age} < 0")
    return AGE_GROUPS[bisect_right(AGE_GROUPS[1:], age)]


def _user_100k(parts: list[str], zip_prefix_digits: int) -> UserRow:
    user_id, age, gender, occupation, zip_code = parts
    if not gender or not occupation:
        raise ValueError("gender and occupation must be non-empty")
    return _id(user_id), gender, age_group(int(age)), occupation, zip_code[:zip_prefix_digits]


def _movie_100k(parts: list[str], genre_names: Sequence[str]) -> MovieRow:
    title, release_date, flags = parts[1], parts[2], parts[5:]
    if any(flag not in ("0", "1") for flag in flags):
        raise ValueError("genre flags must be 0 or 1")
    genres = [name for name, flag in zip(genre_names, flags, strict=True) if flag == "1"]
    if not genres:
        raise ValueError("no genre flag set")
    year = YEAR_PATTERN.search(title) or RELEASE_YEAR_PATTERN.search(release_date)
    if year is None and release_date:
        raise ValueError(f"release date {release_date!r} does not end in a year")
    return _id(parts[0]), None if year is None else int(year.group(1)), genres


def _genre_names(path: Path) -> list[str]:
    """u.genre's names ordered by flag position (the file ends in a blank line)."""
    rows = _parse(path, SEPARATOR_100K, 2, lambda p: (int(p[1]), p[0]), skip_blank=True)
    if sorted(position for position, _ in rows) != list(range(len(rows))):
        raise ValueError(f"{path}: flag positions must be 0..{len(rows) - 1}, each once")
    if not all(name for _, name in rows):
        raise ValueError(f"{path}: empty genre name")
    return [name for _, name in sorted(rows)]


class _Release(NamedTuple):
    """One MovieLens release as read, before the shared protocol turns it into samples."""

    name: str
    ratings_path: Path
    users_path: Path
    movies_path: Path
    ratings: np.ndarray  # [n, 4] int64 user id, movie id, rating, timestamp
    users: list[UserRow]
    movies: list[MovieRow]


def load_movielens_1m(config: MovieLensConfig, *, progress: bool = True) -> InteractionData:
    """Read ratings.dat, users.dat and movies.dat from `config.data_dir` into samples."""
    ratings_path = config.data_dir / "ratings.dat"
    users_path, movies_path = config.data_dir / "users.dat", config.data_dir / "movies.dat"
    movies = _parse(movies_path, SEPARATOR, 3, _movie)
    users: list[UserRow] = _parse(
        users_path,
        SEPARATOR,
        5,
        lambda p: (_id(p[0]), p[1], int(p[2]), int(p[3]), p[4][: config.zip_prefix_digits]),
    )
    ratings = _ratings(ratings_path, SEPARATOR, config, progress)
    release = _Release("ml-1m", ratings_path, users_path, movies_path, ratings, users, movies)
    return _interaction_data(release, config)


def load_movielens_100k(config: MovieLens100KConfig, *, progress: bool = True) -> InteractionData:
    """Read u.genre, u.item, u.user and u.data from `config.data_dir` into samples, under the
    ML-1M protocol and schema (see the module docstring for how the fields are matched)."""
    ratings_path, users_path = config.data_dir / "u.data", config.data_dir / "u.user"
    movies_path = config.data_dir / "u.item"
    genre_names = _genre_names(config.data_dir / "u.genre")
    movies = _parse(
        movies_path, SEPARATOR_100K, 5 + len(genre_names), lambda p: _movie_100k(p, genre_names)
    )
    users = _parse(users_path, SEPARATOR_100K, 5, lambda p: _user_100k(p, config.zip_prefix_digits))
    ratings = _ratings(ratings_path, RATINGS_SEPARATOR_100K, config, progress)
    release = _Release("ml-100k", ratings_path, users_path, movies_path, ratings, users, movies)
    return _interaction_data(release, config)


def _movie_table(
    movies: list[MovieRow], movie_ids: np.ndarray
) -> tuple[np.ndarray, int, dict[str, int]]:
    """Items: row = movie id; item_id, genres (0-padded slots), year. Returns the table
    [max id + 1, 2 + genre slots], the genre slots and the item fields' vocabulary sizes."""
    genre_index = {g: i for i, g in enumerate(sorted({g for m in movies for g in m[2]}), 1)}
    genre_slots = max(len(m[2]) for m in movies)
    years, year_vocab = encode([m[1] for m in movies])
    item_features = np.zeros((int(movie_ids.max()) + 1, 2 + genre_slots), dtype=np.int64)
    item_features[movie_ids, 0] = movie_ids
    item_features[movie_ids, -1] = years
    for movie_id, _, genres in movies:
        item_features[movie_id, 1 : 1 + len(genres)] = [genre_index[g] for g in genres]
    vocab_sizes = {
        "item_id": item_features.shape[0],
        "genres": len(genre_index) + 1,
        "year": year_vocab,
    }
    return item_features, genre_slots, vocab_sizes


def _user_table(
    users: list[UserRow], user_ids_dat: np.ndarray, ratings: np.ndarray, vocab_sizes: dict[str, int]
) -> tuple[np.ndarray, int]:
    """Users: row = user id; user_id for everyone known, the profile only from users.dat.
    Adds the user fields' vocabulary sizes to `vocab_sizes`; returns the table and the
    largest user id."""
    max_user = int(max(user_ids_dat.max(), ratings[:, 0].max()))
    user_features = np.zeros((max_user + 1, len(USER_FIELDS)), dtype=np.int64)
    vocab_sizes["user_id"] = max_user + 1
    for column, name in enumerate(USER_FIELDS[1:], 1):
        user_features[user_ids_dat, column], vocab_sizes[name] = encode([u[column] for u in users])
    user_features[user_ids_dat, 0] = user_ids_dat
    user_features[ratings[:, 0], 0] = ratings[:, 0]
    return user_features, max_user


def _interaction_data(release: _Release, config: MovieLensConfig) -> InteractionData:
    """The shared protocol: feature tables, labelled samples, histories and the random split."""
    ratings, users, movies = release.ratings, release.users, release.movies
    movie_ids = np.array([m[0] for m in movies], dtype=np.int64)
    user_ids_dat = np.array([u[0] for u in users], dtype=np.int64)
    check_unique_ids(release.movies_path, movie_ids)
    check_unique_ids(release.users_path, user_ids_dat)
    unknown = np.flatnonzero(~np.isin(ratings[:, 1], movie_ids))
    if unknown.size:
        raise ValueError(
            f"{release.ratings_path}, line {unknown[0] + 1}: movie id "
            f"{ratings[unknown[0], 1]} is not in {release.movies_path.name}"
        )

    item_features, genre_slots, vocab_sizes = _movie_table(movies, movie_ids)
    user_features, max_user = _user_table(users, user_ids_dat, ratings, vocab_sizes)

    # Samples, in file order.
    neutral = ratings[:, 2] == config.positive_threshold
    samples = ratings[~neutral] if config.drop_neutral else ratings
    if not samples.shape[0]:
        raise ValueError(f"{release.ratings_path}: no samples left after dropping neutral ratings")
    sample_users, sample_items, timestamps = samples[:, 0], samples[:, 1], samples[:, 3]
    positive = samples[:, 2] > config.positive_threshold

    # Histories: the user's positives strictly before the sample, ordered by (time, movie id).
    histories, latest = histories_before(
        sample_users[positive],
        timestamps[positive],
        sample_items[positive],
        sample_users,
        timestamps,
        max_user,
        config.max_history,
    )

    rng = np.random.default_rng(config.seed)
    n = samples.shape[0]
    splits = random_split(n, rng, config.test_fraction, config.validation_fraction)
    sample_user_features = sample_item_features = None
    if config.mean_rating_features:
        if samples[:, 2].min() < 1 or samples[:, 2].max() > MAX_RATING:
            raise ValueError(f"{release.ratings_path}: ratings must lie in 1..{MAX_RATING}")
        vocab_sizes.update(dict.fromkeys(MEAN_RATING_FIELDS.values(), MEAN_RATING_VOCAB))
        # The tables get a padding column; only the per-sample rows carry the means.
        user_features = np.pad(user_features, ((0, 0), (0, 1)))
        item_features = np.pad(item_features, ((0, 0), (0, 1)))
        sample_user_features = user_features[sample_users]
        sample_user_features[:, -1] = split_mean_buckets(sample_users, samples[:, 2], splits)
        sample_item_features = item_features[sample_items]
        sample_item_features[:, -1] = split_mean_buckets(sample_items, samples[:, 2], splits)
    return InteractionData(
        name=release.name,
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
        splits=splits,
        sample_user_features=sample_user_features,
        sample_item_features=sample_item_features,
        details={
            "config": config.model_dump(mode="json"),
            "ratings_read": int(ratings.shape[0]),
            "dropped_neutral": int(neutral.sum()) if config.drop_neutral else 0,
            "samples": int(n),
            "positive_share": float(positive.mean()),
            "users": int(np.unique(sample_users).size),
            "items": int(np.unique(sample_items).size),
            "catalogue": int(movie_ids.size),
            "mean_rating_features": config.mean_rating_features,
        },
    )


def split_mean_buckets(
    keys: np.ndarray, ratings: np.ndarray, splits: dict[str, np.ndarray]
) -> np.ndarray:
    """[n] int64: per sample, the half-star bucket of the mean rating over the samples of its own
    split with the same key (user or item id): floor(2 * mean + 1/2), in integer arithmetic."""
    buckets = np.zeros(keys.shape[0], dtype=np.int64)
    for indices in splits.values():
        _, group = np.unique(keys[indices], return_inverse=True)
        sums = np.bincount(group, weights=ratings[indices]).astype(np.int64)
        counts = np.bincount(group)
        buckets[indices] = (4 * sums[group] + counts[group]) // (2 * counts[group])
    return buckets
