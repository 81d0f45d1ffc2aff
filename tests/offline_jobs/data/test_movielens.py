"""MovieLens 1M loader against the genuine files (../shared/data/ml-1m, or PRERANK_ML1M__DATA_DIR).

Expectations are recomputed naively from the raw lines, so the tests hold for the partial
ratings.dat (users 1-2999) and for the complete file alike.
"""

from __future__ import annotations

import os
import shutil
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from offline_jobs.data.dataset import left_pad
from offline_jobs.data.movielens import MovieLensConfig, load_movielens_1m

DEFAULT_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ml-1m"
DATA_DIR = Path(os.environ.get("PRERANK_ML1M__DATA_DIR", DEFAULT_DIR))
FEW_RATINGS = 60_000

if "PRERANK_ML1M__DATA_DIR" not in os.environ and not DEFAULT_DIR.is_dir():
    pytest.skip(
        f"no ML-1M data at {DEFAULT_DIR} (set PRERANK_ML1M__DATA_DIR)", allow_module_level=True
    )


def raw_ratings(limit: int | None) -> list[tuple[int, int, int, int]]:
    with (DATA_DIR / "ratings.dat").open(encoding="ascii") as handle:
        return [tuple(int(x) for x in line.strip().split("::")) for line in islice(handle, limit)]


def naive_history(ratings, user: int, before: int, length: int) -> np.ndarray:
    earlier = sorted((t, m) for u, m, r, t in ratings if u == user and r > 3 and t < before)
    return left_pad([m for _, m in earlier], length)


@pytest.fixture(scope="module")
def config() -> MovieLensConfig:
    return MovieLensConfig(data_dir=DATA_DIR, max_ratings=FEW_RATINGS)


@pytest.fixture(scope="module")
def data(config):
    return load_movielens_1m(config, progress=False)


def test_movies_are_latin1_with_year_and_genres(data) -> None:
    lines = (DATA_DIR / "movies.dat").read_bytes().decode("latin-1").splitlines()
    assert "73::Misérables, Les (1995)::Drama|Musical" in lines
    g0, g1 = data.schema.slot_ranges("item")["genres"]
    toy_story, miserables = data.item_features[1], data.item_features[73]
    sorted_genres = sorted({g for line in lines for g in line.split("::")[2].split("|")})
    index = {g: i for i, g in enumerate(sorted_genres, 1)}
    expected = [index["Animation"], index["Children's"], index["Comedy"]]
    assert toy_story[g0:g1].tolist() == expected + [0] * (g1 - g0 - 3)
    assert miserables[g0:g1].tolist()[:2] == [index["Drama"], index["Musical"]]
    years = sorted({int(line.rsplit("(", 1)[1][:4]) for line in lines})
    year_column = data.schema.slot_ranges("item")["year"][0]
    assert toy_story[year_column] == miserables[year_column] == years.index(1995) + 1


def test_schema_item_id_first_and_genre_slots(data) -> None:
    lines = (DATA_DIR / "movies.dat").read_text(encoding="latin-1").splitlines()
    item_fields = data.schema.item_fields
    assert [f.name for f in item_fields] == ["item_id", "genres", "year"]
    assert item_fields[0].slots == 1
    assert item_fields[1].slots == max(len(line.split("::")[2].split("|")) for line in lines)
    movie_ids = sorted(int(line.split("::")[0]) for line in lines)
    assert data.catalogue.tolist() == movie_ids
    assert item_fields[0].vocab_size == movie_ids[-1] + 1 == data.item_features.shape[0]
    assert (data.item_features[data.catalogue, 0] == data.catalogue).all()
    absent = np.setdiff1d(np.arange(data.item_features.shape[0]), data.catalogue)
    assert not data.item_features[absent].any()
    assert data.user_features.shape[1] == data.schema.user_slots
    assert data.item_features.shape[1] == data.schema.item_slots


def test_user_profiles_use_sorted_vocabularies(data, config) -> None:
    users = [line.split("::") for line in (DATA_DIR / "users.dat").read_text().splitlines()]
    columns = data.schema.slot_ranges("user")
    raw = {
        "gender": [u[1] for u in users],
        "age": [int(u[2]) for u in users],
        "occupation": [int(u[3]) for u in users],
        "zip_prefix": [u[4][: config.zip_prefix_digits] for u in users],
    }
    for name, values in raw.items():
        vocab = sorted(set(values))
        start, _ = columns[name]
        expected = [vocab.index(v) + 1 for v in values]
        assert data.user_features[[int(u[0]) for u in users], start].tolist() == expected
    assert data.user_features[1].tolist()[0] == 1 and not data.user_features[0].any()


def test_labels_match_ratings_and_neutral_dropped(data) -> None:
    kept = [r for r in raw_ratings(FEW_RATINGS) if r[2] != 3]
    assert data.details["ratings_read"] == FEW_RATINGS
    assert data.details["dropped_neutral"] == FEW_RATINGS - len(kept)
    assert data.user_ids.tolist() == [r[0] for r in kept]
    assert data.item_ids.tolist() == [r[1] for r in kept]
    assert data.timestamps.dtype == np.int64
    assert data.timestamps.tolist() == [r[3] for r in kept]
    assert data.labels.dtype == np.float32
    assert data.labels.tolist() == [float(r[2] > 3) for r in kept]


def test_histories_strictly_before_and_match_naive(data, config) -> None:
    ratings = raw_ratings(FEW_RATINGS)
    positives = {(u, m): t for u, m, r, t in ratings if r > 3}
    rng = np.random.default_rng(0)
    for i in rng.choice(len(data.labels), size=300, replace=False):
        user, time = int(data.user_ids[i]), int(data.timestamps[i])
        for item in data.histories[i][data.histories[i] != 0]:
            assert positives[(user, int(item))] < time
    for user in np.unique(data.user_ids)[:: max(1, len(np.unique(data.user_ids)) // 8)]:
        for i in np.flatnonzero(data.user_ids == user):
            expected = naive_history(
                ratings, int(user), int(data.timestamps[i]), config.max_history
            )
            assert data.histories[i].tolist() == expected.tolist()
        expected = naive_history(ratings, int(user), np.iinfo(np.int64).max, config.max_history)
        assert data.latest_histories[user].tolist() == expected.tolist()


def test_history_length_and_left_padding(data, config) -> None:
    assert data.histories.shape == (len(data.labels), config.max_history)
    assert data.latest_histories.shape == (data.user_features.shape[0], config.max_history)
    for rows in (data.histories, data.latest_histories):
        filled = rows != 0
        # once a slot is filled, every later slot is too (zeros only on the left)
        assert (np.diff(filled.astype(np.int8), axis=1) >= 0).all()
    lengths = (data.histories != 0).sum(axis=1)
    assert lengths.max() == config.max_history and lengths.min() == 0


def test_splits_disjoint_cover_and_deterministic(data, config) -> None:
    parts = [data.splits[name] for name in ("train", "validation", "test")]
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(len(data.labels)))
    assert len(parts[2]) == round(len(data.labels) * config.test_fraction)
    again = load_movielens_1m(config, progress=False)
    other = load_movielens_1m(config.model_copy(update={"seed": config.seed + 1}), progress=False)
    assert again.fingerprint() == data.fingerprint()
    assert all(np.array_equal(again.splits[k], data.splits[k]) for k in data.splits)
    assert not np.array_equal(other.splits["test"], data.splits["test"])


def copy_files(tmp_path: Path, ratings_lines: int) -> Path:
    for name in ("users.dat", "movies.dat"):
        shutil.copyfile(DATA_DIR / name, tmp_path / name)
    with (DATA_DIR / "ratings.dat").open(encoding="ascii") as handle:
        (tmp_path / "ratings.dat").write_text("".join(islice(handle, ratings_lines)))
    return tmp_path


@pytest.mark.parametrize(
    ("name", "bad_line"),
    [
        ("ratings.dat", "1::1193::five::978300760\n"),
        ("users.dat", "7::M::25\n"),
        ("movies.dat", "99999::No Year Here::Drama\n"),
    ],
)
def test_malformed_line_names_the_file(tmp_path, name, bad_line) -> None:
    folder = copy_files(tmp_path, 100)
    lines = (folder / name).read_bytes().splitlines(keepends=True)
    lines.insert(2, bad_line.encode())
    (folder / name).write_bytes(b"".join(lines))
    with pytest.raises(ValueError, match=rf"{name}, line 3"):
        load_movielens_1m(MovieLensConfig(data_dir=folder), progress=False)


def test_missing_file_is_named(tmp_path) -> None:
    folder = copy_files(tmp_path, 10)
    (folder / "users.dat").unlink()
    with pytest.raises(FileNotFoundError, match=r"users\.dat"):
        load_movielens_1m(MovieLensConfig(data_dir=folder), progress=False)


def test_whole_ratings_file(config) -> None:
    full = load_movielens_1m(config.model_copy(update={"max_ratings": None}), progress=False)
    with (DATA_DIR / "ratings.dat").open(encoding="ascii") as handle:
        ratings = [line.split("::") for line in handle]
    kept = [r for r in ratings if r[2] != "3"]
    assert full.details["ratings_read"] == len(ratings)
    assert len(full.labels) == len(kept)
    assert full.details["users"] == len({r[0] for r in kept})
    users = [line.split("::") for line in (DATA_DIR / "users.dat").read_text().splitlines()]
    assert full.num_users == max(int(u[0]) for u in users + ratings)
    user = int(kept[-1][0])
    own = [(int(r[3]), int(r[1])) for r in kept if int(r[0]) == user and int(r[2]) > 3]
    expected = left_pad([m for _, m in sorted(own)], config.max_history)
    assert full.latest_histories[user].tolist() == expected.tolist()
