"""The MovieLens format adapters: a few lines of each original format written per test, converted
to Parquet, and read back through the shipped specs, which must give the built-in loader's
samples, labels, histories, features and random split (only the id vocabulary's size may differ).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from offline_jobs.__main__ import main as offline_main
from offline_jobs.data import adapters
from offline_jobs.data.adapters import (
    SPECS_DIR,
    TABLES_ROOT,
    convert,
    ensure_shipped_tables,
    shipped_tables,
)
from offline_jobs.data.converted import TABLES
from offline_jobs.data.movielens import (
    MovieLens100KConfig,
    MovieLensConfig,
    load_movielens_1m,
    load_movielens_100k,
)
from offline_jobs.data.movielens_files import convert_movielens_1m, convert_movielens_100k
from offline_jobs.data.spec import load_spec
from offline_jobs.data.spec_data import load_spec_data
from tests.offline_jobs.data.same_samples import assert_same_samples, shipped_spec_on

GENRES_100K = (
    *("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime"),
    *("Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery"),
    *("Romance", "Sci-Fi", "Thriller", "War", "Western"),
)
SIX_GENRES = {"Action", "Comedy", "Crime", "Drama", "War", "Western"}  # the specs' genre slots
USERS, MOVIES_PER_USER = 6, 5
SHIPPED = ("ml-1m", "ml-1m-temporal", "ml-100k", "ml-100k-temporal")


def rating_rows(movie_ids: list[int]) -> list[tuple[int, int, int, int]]:
    """(user, movie, stars, time): every user rates 5 movies, stars cycling through 1..5, times
    with ties so that histories must break them by movie id."""
    rows = []
    for user in range(1, USERS + 1):
        for k in range(MOVIES_PER_USER):
            movie = movie_ids[(user + k) % len(movie_ids)]
            rows.append((user, movie, 1 + (user + 2 * k) % 5, 1000 + 10 * user + k // 2))
    return rows


def write_ml1m(folder: Path) -> Path:
    """ratings/users/movies.dat: a Latin-1 title, a title with a colon, a zip's leading zero, a
    movie with six genres (the shipped spec's genre slots)."""
    folder.mkdir(parents=True, exist_ok=True)
    movies = [
        "10::Misérables, Les (1995)::Drama|Musical",
        "20::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Fantasy|Sci-Fi",
        "30::Toy Story (1995)::Animation|Children's|Comedy",
        "40::Everything (2000)::Action|Comedy|Crime|Drama|Horror|War",
        "50::Heat (1995)::Action|Crime|Thriller",
        "60::Never Rated (1999)::Drama",
    ]
    (folder / "movies.dat").write_bytes("\n".join(movies).encode("latin-1") + b"\n")
    users = [
        "1::F::1::10::01460",
        "2::M::56::16::70072",
        "3::M::25::15::55117-1234",
        "4::F::35::0::98107",
        "5::M::18::4::10001",
        "6::F::45::7::02139",
        "7::M::50::2::94110",  # in users.dat, never rated
    ]
    (folder / "users.dat").write_text("\n".join(users) + "\n")
    ratings = rating_rows([10, 20, 30, 40, 50])
    (folder / "ratings.dat").write_text("".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in ratings))
    return folder


def item_line(movie: int, title: str, release: str, genres: set[str]) -> str:
    flags = "|".join("1" if name in genres else "0" for name in GENRES_100K)
    return f"{movie}|{title}|{release}||http://example.org/{movie}|{flags}"


def write_ml100k(folder: Path) -> Path:
    """u.data/u.user/u.item/u.genre: raw ages to group, a non-numeric zip, a year from the release
    date only, a movie with no year at all, a movie with six genres."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.genre").write_text(
        "".join(f"{name}|{i}\n" for i, name in enumerate(GENRES_100K)) + "\n"
    )
    items = [
        item_line(1, "Toy Story (1995)", "01-Jan-1995", {"Animation", "Children's", "Comedy"}),
        item_line(2, "Misérables, Les", "01-Jan-1998", {"Drama", "Musical"}),
        item_line(3, "unknown", "", {"unknown"}),
        item_line(4, "Everything (2000)", "01-Jan-2001", SIX_GENRES),
        item_line(5, "Heat (1995)", "01-Jan-1995", {"Action", "Crime", "Thriller"}),
    ]
    (folder / "u.item").write_bytes("\n".join(items).encode("latin-1") + b"\n")
    users = [
        "1|17|M|student|85711",
        "2|18|F|other|94043",
        "3|24|M|writer|T8H1N",
        "4|25|F|technician|01460",
        "5|56|M|retired|32067",
        "6|73|F|none|55105",
    ]
    (folder / "u.user").write_text("\n".join(users) + "\n")
    ratings = rating_rows([1, 2, 3, 4, 5])
    (folder / "u.data").write_text("".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in ratings))
    return folder


def test_ml1m_tables_hold_the_derived_features(tmp_path: Path) -> None:
    tables = convert_movielens_1m(write_ml1m(tmp_path))
    assert tables.interactions.num_rows == USERS * MOVIES_PER_USER
    assert tables.interactions.slice(0, 1).to_pylist() == [
        {"user_id": 1, "item_id": 20, "rating": 2, "timestamp": 1010}
    ]
    users = tables.users.to_pydict()
    assert users["zip_prefix"][:3] == ["01", "70", "55"]  # the leading zero kept
    assert users["age"][:2] == [1, 56] and users["occupation"][:2] == [10, 16]
    items = tables.items.to_pydict()
    assert items["title"][:2] == [
        "Misérables, Les (1995)",
        "Star Wars: Episode IV - A New Hope (1977)",
    ]
    assert items["genres"][1] == ["Action", "Adventure", "Fantasy", "Sci-Fi"]
    assert items["year"] == [1995, 1977, 1995, 2000, 1995, 1999]


def test_ml100k_tables_hold_ml1m_features(tmp_path: Path) -> None:
    tables = convert_movielens_100k(write_ml100k(tmp_path))
    assert tables.interactions.num_rows == USERS * MOVIES_PER_USER
    users = tables.users.to_pydict()
    assert users["age"] == [1, 18, 18, 25, 56, 56]  # ML-1M's age groups
    assert users["occupation"][0] == "student" and users["zip_prefix"][2] == "T8"
    items = tables.items.to_pydict()
    assert items["title"][1] == "Misérables, Les"  # Latin-1
    assert items["genres"][0] == ["Animation", "Children's", "Comedy"]  # u.genre's order
    assert items["genres"][2] == ["unknown"]
    assert items["year"] == [1995, 1998, None, 2000, 1995]  # title, else release date, else none


def test_a_line_with_the_wrong_field_count_names_the_file(tmp_path: Path) -> None:
    folder = write_ml1m(tmp_path)
    with (folder / "ratings.dat").open("a") as ratings:
        ratings.write("1::10::5\n")
    with pytest.raises(ValueError, match=r"ratings\.dat"):
        convert_movielens_1m(folder)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path)
    (folder / "u.user").unlink()
    with pytest.raises(FileNotFoundError, match=r"u\.user"):
        convert_movielens_100k(folder)


def test_the_convert_command_writes_the_three_tables(tmp_path: Path) -> None:
    source, out = write_ml1m(tmp_path / "src"), tmp_path / "out"
    assert offline_main(["convert", "movielens-1m", str(source), str(out)]) == 0
    for name in TABLES:
        assert pq.read_table(out / f"{name}.parquet").num_rows > 0
    assert offline_main(["convert", "movielens-100k", str(tmp_path / "none"), str(out)]) == 2


def test_the_ml1m_spec_reads_what_the_builtin_loader_reads(tmp_path: Path) -> None:
    source = write_ml1m(tmp_path / "src")
    convert("movielens-1m", source, tmp_path / "tables")
    spec = load_spec_data(load_spec(shipped_spec_on(tmp_path / "tables", "ml-1m", tmp_path)))
    builtin = load_movielens_1m(MovieLensConfig(data_dir=source), progress=False)
    assert_same_samples(spec, builtin)


def test_the_ml100k_spec_reads_what_the_builtin_loader_reads(tmp_path: Path) -> None:
    source = write_ml100k(tmp_path / "src")
    convert("movielens-100k", source, tmp_path / "tables")
    spec = load_spec_data(load_spec(shipped_spec_on(tmp_path / "tables", "ml-100k", tmp_path)))
    builtin = load_movielens_100k(MovieLens100KConfig(data_dir=source), progress=False)
    assert_same_samples(spec, builtin)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_specs_keep_the_builtin_protocol(name: str) -> None:
    spec = load_spec(SPECS_DIR / f"{name}.yaml")
    protocol = MovieLensConfig()
    assert spec.history.length == protocol.max_history
    assert spec.interactions.rating is not None
    assert spec.interactions.rating.positive_at_least == protocol.positive_threshold + 1
    assert spec.interactions.rating.drop == (protocol.positive_threshold,)
    assert spec.split.kind == ("temporal" if name.endswith("temporal") else "random")
    # the built-in validation share is carved from what the test leaves
    assert spec.split.test == protocol.test_fraction
    assert spec.split.validation == pytest.approx(
        protocol.validation_fraction * (1 - protocol.test_fraction)
    )
    release = name.removesuffix("-temporal")
    assert shipped_tables(spec) == (
        {"ml-1m": "movielens-1m", "ml-100k": "movielens-100k"}[release],
        TABLES_ROOT / release,
    )


def test_a_shipped_specs_missing_tables_are_converted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapters, "TABLES_ROOT", tmp_path / "datasets")
    source = write_ml100k(tmp_path / "src")
    spec = load_spec(shipped_spec_on(tmp_path / "datasets" / "ml-100k", "ml-100k", tmp_path))
    sources = {"movielens-1m": tmp_path / "absent", "movielens-100k": source}
    assert ensure_shipped_tables(spec, sources)
    assert load_spec_data(spec).labels.size > 0
    assert not ensure_shipped_tables(spec, sources)  # written: left alone
    elsewhere = load_spec(shipped_spec_on(tmp_path / "datasets" / "ml-100k", "ml-100k", tmp_path))
    monkeypatch.setattr(adapters, "TABLES_ROOT", tmp_path / "other")
    assert shipped_tables(elsewhere) is None and not ensure_shipped_tables(elsewhere, sources)
