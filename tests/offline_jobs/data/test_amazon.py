"""Amazon loader against small files written in the public 2014 and 2018 formats.

Expectations are recomputed naively from the fixture's own records.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from offline_jobs.data.amazon import AmazonConfig, load_amazon
from offline_jobs.data.dataset import SPLITS, left_pad

MAX_HISTORY = 4
USERS = [f"A{n:03d}XQ" for n in (17, 3, 250, 9, 41, 5, 78, 120)]
ASINS = [f"B00{n:05d}" for n in (311, 27, 9051, 400, 12, 777, 88, 6000, 4501, 230)]
UNDESCRIBED = ASINS[3]  # reviewed, absent from the metadata
CATEGORY_PATHS = [
    ["Electronics", "Computers & Accessories", "Cables"],
    ["Electronics", "Camera & Photo"],
    ["Electronics", "Kid's Headphones"],  # an apostrophe: repr() switches to double quotes
    [],
]
BRANDS = ["Sony", "", "Anker", "Kid's Brand"]
STYLES = {
    "2014": ("reviews_Electronics_5.json", "meta_Electronics.json"),
    "2018": ("Electronics_5.json", "meta_Electronics.json"),
}


def make_reviews(seed: int = 3, n: int = 160) -> list[dict[str, object]]:
    """Reviews in a fixed order; few distinct days, so same-day ties are common."""
    rng = np.random.default_rng(seed)
    days = 1_300_000_000 + 86_400 * rng.integers(0, 12, size=n)
    return [
        {
            "reviewerID": USERS[rng.integers(len(USERS))],
            "asin": ASINS[rng.integers(len(ASINS))],
            "overall": float(rng.integers(1, 6)),
            "unixReviewTime": int(day),
        }
        for day in days
    ]


def item_meta(index: int) -> tuple[list[str], str]:
    return CATEGORY_PATHS[index % len(CATEGORY_PATHS)], BRANDS[index % len(BRANDS)]


def review_line(review: dict[str, object], style: str) -> str:
    text = {"reviewerName": "J. Doe", "reviewText": 'Works, "mostly".', "summary": "ok"}
    if style == "2014":
        record = {**review, "helpful": [2, 3], **text, "reviewTime": "09 13, 2011"}
    else:
        record = {"overall": review["overall"], "verified": True, "reviewTime": "09 13, 2011"}
        record |= {**review, "style": {"Format:": " Hardcover"}, **text}
    return json.dumps(record)


def meta_line(asin: str, index: int, style: str) -> str:
    path, brand = item_meta(index)
    if style == "2014":  # Python literals, as the 2014 metadata is: not JSON
        record = {"asin": asin, "title": "Kid's cable", "price": 3.17, "imUrl": "http://x/y.jpg"}
        record |= {"related": {"also_bought": [ASINS[0]]}, "salesRank": {"Electronics": 9}}
        record |= {"brand": brand, "categories": [path, ["Other", "Path"]] if path else []}
        return repr(record)
    record = {"category": path, "tech1": "", "description": ["a"], "title": "x", "brand": brand}
    record |= {"also_buy": [ASINS[1]], "price": "$12.99", "asin": asin, "imageURL": []}
    return json.dumps(record)


def write(path: Path, lines: list[str], compressed: bool) -> None:
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if compressed else data)


def write_dataset(
    folder: Path, style: str = "2014", compressed: bool = True, reviews: list | None = None
) -> AmazonConfig:
    """Reviews + metadata (with an unreviewed item, a duplicate and one item missing)."""
    reviews_name, meta_name = STYLES[style]
    suffix = ".gz" if compressed else ""
    write(
        folder / (reviews_name + suffix),
        [review_line(r, style) for r in reviews or make_reviews()],
        compressed,
    )
    described = [(a, i) for i, a in enumerate(ASINS) if a != UNDESCRIBED]
    lines = [meta_line(a, i, style) for a, i in described] + [meta_line("B0UNREVIEWED", 1, style)]
    lines.insert(2, "")
    lines.append(meta_line(ASINS[0], 2, style))  # a later duplicate: the first line wins
    write(folder / (meta_name + suffix), lines, compressed)
    return AmazonConfig(
        data_dir=folder,
        reviews_file=reviews_name + suffix,
        meta_file=meta_name + suffix,
        max_history=MAX_HISTORY,
    )


@pytest.fixture(scope="module")
def reviews() -> list[dict[str, object]]:
    return make_reviews()


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> AmazonConfig:
    return write_dataset(tmp_path_factory.mktemp("amazon"))


@pytest.fixture(scope="module")
def data(config):
    return load_amazon(config, progress=False)


@pytest.mark.parametrize(
    ("style", "compressed"), [("2014", False), ("2018", True), ("2018", False)]
)
def test_both_releases_gzip_or_plain_load_identically(tmp_path, data, style, compressed) -> None:
    other = load_amazon(write_dataset(tmp_path, style, compressed), progress=False)
    assert other.fingerprint() == data.fingerprint()


def test_ids_follow_sorted_raw_ids_and_labels_follow_threshold(data, reviews) -> None:
    users, items = sorted({r["reviewerID"] for r in reviews}), sorted({r["asin"] for r in reviews})
    assert data.user_ids.tolist() == [users.index(r["reviewerID"]) + 1 for r in reviews]
    assert data.item_ids.tolist() == [items.index(r["asin"]) + 1 for r in reviews]
    assert data.timestamps.tolist() == [r["unixReviewTime"] for r in reviews]
    assert data.labels.dtype == np.float32
    assert data.labels.tolist() == [float(r["overall"] >= 4) for r in reviews]
    assert 0 < data.labels.mean() < 1
    assert data.catalogue.tolist() == list(range(1, len(items) + 1))
    assert data.user_features[:, 0].tolist() == list(range(len(users) + 1))


def test_item_features_leaf_category_brand_and_padding(data, reviews) -> None:
    items = sorted({r["asin"] for r in reviews})
    assert [f.name for f in data.schema.item_fields] == ["item_id", "category", "brand"]
    leaves = sorted({p[-1] for p in CATEGORY_PATHS if p})
    brands = sorted({b for b in BRANDS if b})
    sizes = {f.name: f.vocab_size for f in data.schema.fields}
    assert sizes == {
        "user_id": len(USERS) + 1,
        "item_id": len(items) + 1,
        "category": len(leaves) + 1,
        "brand": len(brands) + 1,
    }
    assert not data.item_features[0].any()
    for item_id, asin in enumerate(items, 1):
        row = data.item_features[item_id].tolist()
        if asin == UNDESCRIBED:
            assert row == [item_id, 0, 0]
            continue
        path, brand = item_meta(ASINS.index(asin))
        category = leaves.index(path[-1]) + 1 if path else 0
        assert row == [item_id, category, brands.index(brand) + 1 if brand else 0]
    assert data.details["items_without_meta"] == 1


def naive_history(reviews, user: str, before: float, asins: list[str]) -> list[int]:
    earlier = sorted(
        (r["unixReviewTime"], r["asin"])
        for r in reviews
        if r["reviewerID"] == user and r["overall"] >= 4 and r["unixReviewTime"] < before
    )
    return left_pad([asins.index(a) + 1 for _, a in earlier], MAX_HISTORY).tolist()


def test_histories_are_earlier_positives_as_brute_force(data, reviews) -> None:
    asins = sorted({r["asin"] for r in reviews})
    users = sorted({r["reviewerID"] for r in reviews})
    for i, review in enumerate(reviews):
        expected = naive_history(reviews, review["reviewerID"], review["unixReviewTime"], asins)
        assert data.histories[i].tolist() == expected
    for user_id, user in enumerate(users, 1):
        assert data.latest_histories[user_id].tolist() == naive_history(
            reviews, user, np.inf, asins
        )
    assert not data.latest_histories[0].any()
    lengths = (data.histories != 0).sum(axis=1)
    assert lengths.min() == 0 and lengths.max() == MAX_HISTORY  # both edges are exercised


def test_splits_disjoint_covering_and_seeded(data, config) -> None:
    joined = np.concatenate([data.splits[name] for name in SPLITS])
    assert np.array_equal(np.sort(joined), np.arange(data.labels.size))
    assert data.splits["test"].size == round(data.labels.size * config.test_fraction)
    assert load_amazon(config, progress=False).fingerprint() == data.fingerprint()
    other = load_amazon(config.model_copy(update={"seed": config.seed + 1}), progress=False)
    assert not np.array_equal(other.splits["test"], data.splits["test"])


def test_threshold_and_max_reviews(config, reviews) -> None:
    strict = load_amazon(config.model_copy(update={"positive_threshold": 5}), progress=False)
    assert strict.labels.tolist() == [float(r["overall"] == 5) for r in reviews]
    first = load_amazon(config.model_copy(update={"max_reviews": 30}), progress=False)
    assert first.labels.size == 30
    assert first.timestamps.tolist() == [r["unixReviewTime"] for r in reviews[:30]]


@pytest.mark.parametrize("missing", ["reviews", "meta"])
def test_missing_file_is_named(tmp_path, missing) -> None:
    config = write_dataset(tmp_path)
    name = config.reviews_file if missing == "reviews" else config.meta_file
    (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.replace(".", r"\.")):
        load_amazon(config, progress=False)


@pytest.mark.parametrize(
    ("which", "bad_line", "problem"),
    [
        ("reviews", '{"reviewerID": "A1", "asin": "B1", "overall": 5.0', "neither a JSON"),
        ("reviews", '{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 1}', "'overall'"),
        (
            "reviews",
            '{"reviewerID": "A1", "asin": "B1", "overall": 5, "unixReviewTime": "x"}',
            "unixReviewTime",
        ),
        ("meta", f"{{'asin': '{ASINS[1]}', 'brand': 'x'", "neither a JSON"),
        ("meta", f"{{'asin': '{ASINS[0]}', 'categories': 'Electronics'}}", "'categories'"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, which, bad_line, problem) -> None:
    config = write_dataset(tmp_path, compressed=False)
    path = tmp_path / (config.reviews_file if which == "reviews" else config.meta_file)
    lines = path.read_text().splitlines()
    lines.insert(1, bad_line)
    write(path, lines, compressed=False)
    with pytest.raises(ValueError, match=rf"{path.name}, line 2: .*{problem}"):
        load_amazon(config, progress=False)


def test_metadata_is_never_evaluated(tmp_path) -> None:
    config = write_dataset(tmp_path, compressed=False)
    marker = tmp_path / "evaluated"
    meta = tmp_path / config.meta_file
    meta.write_text(f"__import__('pathlib').Path({str(marker)!r}).touch()\n" + meta.read_text())
    with pytest.raises(ValueError, match=rf"{meta.name}, line 1"):
        load_amazon(config, progress=False)
    assert not marker.exists()
