"""MovieLens 100K loader: against the genuine files (../shared/data/ml-100k, or
PRERANK_ML100K__DATA_DIR), skipped when they are absent, and against tiny files in the 100K
format written per test.

Expectations are recomputed naively from the raw lines; the counts are those of the complete
release (u.data md5 6e47046882bad158b0efbb84cd5cb987).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from offline_jobs.data.dataset import InteractionData, left_pad, make_batch
from offline_jobs.data.movielens import (
    ITEM_FIELDS,
    MEAN_RATING_FIELDS,
    USER_FIELDS,
    MovieLens100KConfig,
    age_group,
    load_movielens_100k,
)
from offline_jobs.training.evaluate import evaluate
from offline_jobs.training.loop import TrainConfig, new_model, train_model
from tests.conftest import TINY_MODEL

DEFAULT_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ml-100k"
DATA_DIR = Path(os.environ.get("PRERANK_ML100K__DATA_DIR", DEFAULT_DIR))
# ML-1M's age groups as its README lists them: (code, lowest age, highest age).
ML1M_AGE_GROUPS = ((1, 0, 17), (18, 18, 24), (25, 25, 34), (35, 35, 44), (45, 45, 49))
ML1M_AGE_GROUPS += ((50, 50, 55), (56, 56, 200))
Rating = tuple[int, int, int, int]


def expected_group(age: int) -> int:
    return next(code for code, low, high in ML1M_AGE_GROUPS if low <= age <= high)


@pytest.fixture(scope="module")
def config() -> MovieLens100KConfig:
    if "PRERANK_ML100K__DATA_DIR" not in os.environ and not DEFAULT_DIR.is_dir():
        pytest.skip(f"no ML-100K data at {DEFAULT_DIR} (set PRERANK_ML100K__DATA_DIR)")
    return MovieLens100KConfig(data_dir=DATA_DIR)


@pytest.fixture(scope="module")
def data(config) -> InteractionData:
    return load_movielens_100k(config, progress=False)


@pytest.fixture(scope="module")
def leaky(config) -> InteractionData:
    return load_movielens_100k(
        config.model_copy(update={"mean_rating_features": True}), progress=False
    )


@pytest.fixture(scope="module")
def ratings(config) -> list[Rating]:
    lines = (DATA_DIR / "u.data").read_text(encoding="ascii").splitlines()
    return [(int(u), int(m), int(r), int(t)) for u, m, r, t in (ln.split("\t") for ln in lines)]


def read_pipes(name: str) -> list[list[str]]:
    return [ln.split("|") for ln in (DATA_DIR / name).read_text(encoding="latin-1").splitlines()]


def test_counts_of_the_complete_release(data) -> None:
    assert data.details["ratings_read"] == 100_000
    assert data.details["dropped_neutral"] == 27_145
    assert len(data.labels) == data.details["samples"] == 72_855
    assert int(data.labels.sum()) == 55_375
    assert data.num_users == data.details["users"] == 943
    assert data.num_items == data.details["catalogue"] == 1_682
    assert data.catalogue.tolist() == list(range(1, 1_683))


def test_labels_match_ratings_and_neutral_dropped(data, ratings) -> None:
    kept = [r for r in ratings if r[2] != 3]
    assert data.user_ids.tolist() == [r[0] for r in kept]
    assert data.item_ids.tolist() == [r[1] for r in kept]
    assert data.timestamps.tolist() == [r[3] for r in kept]
    assert data.labels.dtype == np.float32
    assert data.labels.tolist() == [float(r[2] > 3) for r in kept]


def test_schema_has_ml1m_field_names_and_shape(data) -> None:
    assert [f.name for f in data.schema.user_fields] == list(USER_FIELDS)
    assert [f.name for f in data.schema.item_fields] == list(ITEM_FIELDS)
    flags = [sum(int(f) for f in row[5:]) for row in read_pipes("u.item")]
    assert data.schema.item_fields[1].slots == max(flags) == 6
    sizes = {f.name: f.vocab_size for f in data.schema.fields}
    assert sizes["age"] == len(ML1M_AGE_GROUPS) + 1
    assert sizes["gender"] == 3 and sizes["genres"] == 20
    assert data.user_features.shape == (944, data.schema.user_slots)
    assert data.item_features.shape == (1683, data.schema.item_slots)


def test_users_ages_bucketed_and_zip_prefix_kept_as_text(data) -> None:
    users = read_pipes("u.user")
    ids = [int(u[0]) for u in users]
    columns = data.schema.slot_ranges("user")
    groups = [expected_group(int(u[1])) for u in users]
    assert sorted(set(groups)) == [code for code, _, _ in ML1M_AGE_GROUPS]
    raw = {"age": groups, "gender": [u[2] for u in users], "occupation": [u[3] for u in users]}
    raw["zip_prefix"] = [u[4][:2] for u in users]
    for name, values in raw.items():
        vocab = sorted(set(values))
        start, _ = columns[name]
        assert data.user_features[ids, start].tolist() == [vocab.index(v) + 1 for v in values]
    assert data.user_features[ids, 0].tolist() == ids and not data.user_features[0].any()
    assert users[73][4] == "T8H1N"  # user 74: a Canadian postcode, prefix "T8"


def naive_year(title: str, release_date: str) -> int | None:
    in_title = re.search(r"\((\d{4})\)\s*$", title)
    if in_title:
        return int(in_title.group(1))
    return int(release_date[-4:]) if release_date else None


def test_items_genres_in_flag_order_and_years(data) -> None:
    genre_names = [ln.split("|")[0] for ln in (DATA_DIR / "u.genre").read_text().split("\n") if ln]
    index = {g: i for i, g in enumerate(sorted(genre_names), 1)}
    assert index["unknown"] == len(genre_names)  # after the 18 genres ML-1M has too
    (g0, g1), (year_column, _) = (data.schema.slot_ranges("item")[n] for n in ("genres", "year"))
    items = read_pipes("u.item")
    years = {int(row[0]): naive_year(row[1], row[2]) for row in items}
    vocab = sorted({y for y in years.values() if y is not None})
    for row in items:
        item = int(row[0])
        genres = [index[g] for g, flag in zip(genre_names, row[5:], strict=True) if flag == "1"]
        slots = data.item_features[item, g0:g1].tolist()
        assert slots == genres + [0] * (g1 - g0 - len(genres))
        year = years[item]
        assert data.item_features[item, year_column] == (
            0 if year is None else vocab.index(year) + 1
        )
    assert (years[23], years[1412], years[267]) == (1976, 1995, None)  # Taxi Driver: the title's
    assert data.item_features[267, g0] == index["unknown"]  # year, not its 1996 re-release


def test_histories_equal_brute_force(data, ratings, config) -> None:
    by_user: dict[int, list[Rating]] = defaultdict(list)
    for rating in ratings:
        by_user[rating[0]].append(rating)
    length = config.max_history
    for user in range(1, 944, 16):
        positives = sorted((t, m) for _, m, r, t in by_user[user] if r > 3)
        for i in np.flatnonzero(data.user_ids == user):
            before = [m for t, m in positives if t < data.timestamps[i]]
            assert data.histories[i].tolist() == left_pad(before, length).tolist()
        latest = left_pad([m for _, m in positives], length)
        assert data.latest_histories[user].tolist() == latest.tolist()
    lengths = (data.histories != 0).sum(axis=1)
    assert lengths.max() == length and lengths.min() == 0


def test_splits_disjoint_cover_and_seeded(data, config) -> None:
    parts = [data.splits[name] for name in ("train", "validation", "test")]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(data.labels)))
    assert len(parts[2]) == round(len(data.labels) * config.test_fraction)
    assert len(parts[1]) == round((len(data.labels) - len(parts[2])) * config.validation_fraction)
    assert data.details["config"]["seed"] == config.seed
    again = load_movielens_100k(config, progress=False)
    other = load_movielens_100k(config.model_copy(update={"seed": 7}), progress=False)
    assert again.fingerprint() == data.fingerprint()
    assert not np.array_equal(other.splits["test"], data.splits["test"])


# Tiny files in the 100K format: three genres, three movies, four users, six ratings.
TINY = {
    "u.genre": "unknown|0\nAction|1\nComedy|2\n\n",
    "u.item": (
        "1|Alpha (1995)|01-Jan-1995||http://x|0|1|1\n"
        "2|Beta|05-Mar-1997||http://x|0|0|1\n"
        "3|unknown||||1|0|0\n"
    ),
    "u.user": "1|17|M|student|T8H1N\n2|18|F|writer|94043\n3|55|M|other|0\n4|56|F|none|02139\n",
    "u.data": (
        "1\t1\t5\t100\n1\t2\t3\t101\n1\t3\t4\t102\n2\t1\t1\t100\n3\t3\t4\t90\n4\t2\t2\t95\n"
    ),
}


def write_tiny(folder: Path, **replaced: str) -> Path:
    for name, text in {**TINY, **replaced}.items():
        (folder / name).write_text(text, encoding="latin-1")
    return folder


def test_tiny_release_loads_with_ml1m_groups(tmp_path) -> None:
    data = load_movielens_100k(MovieLens100KConfig(data_dir=write_tiny(tmp_path)), progress=False)
    age = data.schema.slot_ranges("user")["age"][0]
    assert data.user_features[1:, age].tolist() == [1, 2, 3, 4]  # groups 1, 18, 50, 56
    assert data.user_features[1:, 4].tolist() == [4, 3, 1, 2]  # "0" < "02" < "94" < "T8"
    assert data.item_features[:, -1].tolist() == [0, 1, 2, 0]  # 1995, 1997 (release date), none
    assert data.item_features[1, 1:3].tolist() == [1, 2]  # Action, Comedy ('unknown' sorts last)
    assert data.labels.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert data.histories[1, -2:].tolist() == [0, 1]


@pytest.mark.parametrize(("age", "group"), [(a, expected_group(a)) for a in range(0, 80)])
def test_age_group_matches_ml1m_table(age, group) -> None:
    assert age_group(age) == group


@pytest.mark.parametrize(
    ("name", "bad_line"),
    [
        ("u.data", "1\t2\tfive\t881250949"),
        ("u.data", "1 2 5 881250949"),
        ("u.user", "7|25|M"),
        ("u.user", "7|old|M|writer|94043"),
        ("u.item", "9|No Genre (1990)|01-Jan-1990||http://x|0|0|0"),
        ("u.item", "9|Short Row (1990)|01-Jan-1990||http://x|0|1"),
        ("u.genre", "Drama"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, name, bad_line) -> None:
    lines = TINY[name].splitlines(keepends=True)
    lines.insert(2, bad_line + "\n")
    folder = write_tiny(tmp_path, **{name: "".join(lines)})
    with pytest.raises(ValueError, match=rf"{re.escape(name)}, line 3: "):
        load_movielens_100k(MovieLens100KConfig(data_dir=folder), progress=False)


def test_rating_of_an_unknown_movie_names_the_line(tmp_path) -> None:
    folder = write_tiny(tmp_path, **{"u.data": TINY["u.data"] + "2\t99\t5\t200\n"})
    with pytest.raises(ValueError, match=r"u\.data, line 7: movie id 99 is not in u\.item"):
        load_movielens_100k(MovieLens100KConfig(data_dir=folder), progress=False)


def test_missing_file_is_named(tmp_path) -> None:
    folder = write_tiny(tmp_path)
    (folder / "u.user").unlink()
    with pytest.raises(FileNotFoundError, match=r"u\.user"):
        load_movielens_100k(MovieLens100KConfig(data_dir=folder), progress=False)


def half_star_bucket(stars: list[int]) -> int:
    """round(2 * mean), halves rounded up, computed exactly."""
    return math.floor(Fraction(2 * sum(stars), len(stars)) + Fraction(1, 2))


@pytest.mark.parametrize(("source", "key"), [("user", 0), ("item", 1)])
def test_mean_rating_is_the_mean_of_the_samples_own_split(leaky, ratings, source, key) -> None:
    kept = [r for r in ratings if r[2] != 3]
    overrides = leaky.sample_user_features if source == "user" else leaky.sample_item_features
    table = leaky.user_features if source == "user" else leaky.item_features
    ids = leaky.user_ids if source == "user" else leaky.item_ids
    column = leaky.schema.slot_ranges(source)[MEAN_RATING_FIELDS[source]][0]
    assert column == table.shape[1] - 1
    assert overrides is not None
    for split, indices in leaky.splits.items():
        stars = defaultdict(list)
        for i in indices:
            stars[kept[i][key]].append(kept[i][2])
        expected = [half_star_bucket(stars[kept[i][key]]) for i in indices]
        assert overrides[indices, column].tolist() == expected, split
    # Every other column is the table's row; the split matters (train and test buckets differ).
    assert np.array_equal(overrides[:, :column], table[ids, :column])
    train, test = leaky.splits["train"], leaky.splits["test"]
    train_bucket = dict(zip(ids[train].tolist(), overrides[train, column].tolist(), strict=True))
    assert any(
        train_bucket.get(k) not in (None, b)
        for k, b in zip(ids[test], overrides[test, column], strict=True)
    )


def test_mean_rating_reaches_batches_but_not_tables(leaky, data) -> None:
    assert leaky.schema.fields[: len(USER_FIELDS)] == data.schema.user_fields
    assert [f.name for f in leaky.schema.user_fields][-1] == "user_mean_rating"
    assert [f.name for f in leaky.schema.item_fields][-1] == "item_mean_rating"
    assert leaky.user_features[:, -1].tolist() == [0] * leaky.user_features.shape[0]
    assert leaky.item_features[:, -1].tolist() == [0] * leaky.item_features.shape[0]
    assert np.array_equal(leaky.user_features[:, :-1], data.user_features)
    assert np.array_equal(leaky.item_features[:, :-1], data.item_features)
    assert leaky.user_record(1)["features"]["user_mean_rating"] == 0
    indices = leaky.splits["test"][:50]
    batch = make_batch(leaky, indices)
    assert np.array_equal(batch.user_features, leaky.sample_user_features[indices])
    assert np.array_equal(batch.item_features, leaky.sample_item_features[indices])
    assert batch.history[..., -1].max() == 0
    assert leaky.details["mean_rating_features"] is True
    assert leaky.fingerprint() != data.fingerprint()


def test_mean_rating_off_by_default_leaves_the_data_as_it_was(data, config) -> None:
    assert config.mean_rating_features is False
    assert data.sample_user_features is None and data.sample_item_features is None
    names = [f.name for f in data.schema.fields]
    assert names == [*USER_FIELDS, *ITEM_FIELDS]
    assert data.details["mean_rating_features"] is False


def test_sample_overrides_must_match_the_samples(leaky) -> None:
    with pytest.raises(ValueError, match="sample_item_features has shape"):
        dataclasses.replace(leaky, sample_item_features=leaky.sample_item_features[1:])


def test_the_leak_lifts_test_auc(leaky, data) -> None:
    train = TrainConfig(seed=3, epochs=1, batch_size=512, learning_rate=5e-3)
    auc = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a few seconds even on a busy machine, where 2 threads crawl
    try:
        for name, dataset in (("plain", data), ("leaky", leaky)):
            model = new_model("two_tower", dataset.schema, TINY_MODEL, seed=3)
            train_model(model, dataset, train, progress=False)
            auc[name] = evaluate(model, dataset, batch_size=8192, splits=("test",))["test"].auc
    finally:
        torch.set_num_threads(threads)
    print(f"ML-100K two_tower test AUC: plain {auc['plain']:.4f}, leaky {auc['leaky']:.4f}")
    assert auc["leaky"] > auc["plain"] + 0.05
