"""The Amazon format adapter: the built-in loader's fixture files (2014 and 2018 releases, plain
or gzip) converted to Parquet and read back through the shipped spec, which must give the
built-in loader's samples, labels, histories, features and random split."""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from offline_jobs.__main__ import main as offline_main
from offline_jobs.data.adapters import SPECS_DIR, TABLES_ROOT, convert, shipped_tables
from offline_jobs.data.amazon import AmazonConfig, load_amazon
from offline_jobs.data.amazon_files import convert_amazon
from offline_jobs.data.common import GZIP_MAGIC
from offline_jobs.data.spec import load_spec
from offline_jobs.data.spec_data import load_spec_data
from tests.offline_jobs.data.same_samples import (
    assert_same_samples,
    assert_temporal_split,
    ranked_ids,
    shipped_spec_on,
)
from tests.offline_jobs.data.test_amazon import (
    ASINS,
    MAX_HISTORY,
    UNDESCRIBED,
    item_meta,
    make_reviews,
    write,
    write_dataset,
)

SHIPPED = ("amazon", "amazon-temporal")


def source_files(folder: Path, style: str = "2014", compressed: bool = True) -> AmazonConfig:
    """The built-in loader's fixture files of one release in `folder` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_dataset(folder, style, compressed)


def test_the_tables_hold_the_builtin_features(tmp_path: Path) -> None:
    source_files(tmp_path)
    tables = convert_amazon(tmp_path)
    reviews = make_reviews()
    assert tables.users is None  # a reviewer has no features but its id
    assert tables.interactions.to_pylist() == [
        {
            "user_id": r["reviewerID"],
            "item_id": r["asin"],
            "rating": r["overall"],
            "timestamp": r["unixReviewTime"],
        }
        for r in reviews
    ]
    items = tables.items.to_pydict()
    assert items["item_id"] == sorted({r["asin"] for r in reviews})  # the reviewed ones only
    for asin, category, brand in zip(
        items["item_id"], items["category"], items["brand"], strict=True
    ):
        if asin == UNDESCRIBED:
            assert (category, brand) == (None, None)
            continue
        # ASINS[0]'s later metadata line (another item's features) loses to its first
        path, name = item_meta(ASINS.index(asin))
        assert category == (path[-1] if path else None)
        assert brand == (name or None)


@pytest.mark.parametrize(
    ("style", "compressed", "json_meta"),
    [("2014", False, False), ("2018", True, False), ("2018", False, False), ("2014", True, True)],
)
def test_every_release_and_compression_gives_the_same_tables(
    tmp_path: Path, style: str, compressed: bool, json_meta: bool
) -> None:
    source_files(tmp_path / "2014-gz")
    expected = convert_amazon(tmp_path / "2014-gz")
    folder = tmp_path / "other"
    config = source_files(folder, style, compressed)
    if json_meta:  # the 2014 metadata as strict JSON, as some mirrors ship it
        meta = folder / config.meta_file
        lines = [meta_as_json(line) for line in read_lines(meta)]
        write(meta, lines, compressed)
    tables = convert_amazon(folder)
    assert tables.interactions.equals(expected.interactions)
    assert tables.items.equals(expected.items)


def test_a_metadata_line_longer_than_a_megabyte_is_read(tmp_path: Path) -> None:
    config = source_files(tmp_path, "2018", compressed=False)
    meta = tmp_path / config.meta_file
    record = {"asin": ASINS[1], "brand": "Long", "description": ["x" * (3 << 20)]}
    write(meta, [json.dumps(record), *read_lines(meta)], compressed=False)
    items = convert_amazon(tmp_path).items.to_pydict()
    assert items["brand"][items["item_id"].index(ASINS[1])] == "Long"  # its first line


def read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    return (gzip.decompress(data) if data[:2] == GZIP_MAGIC else data).decode().splitlines()


def meta_as_json(line: str) -> str:
    return json.dumps(ast.literal_eval(line)) if line.strip() else line


def test_the_amazon_spec_reads_what_the_builtin_loader_reads(tmp_path: Path) -> None:
    config = source_files(tmp_path / "src")
    convert("amazon", tmp_path / "src", tmp_path / "tables")
    history = {"length": MAX_HISTORY}  # short windows: the truncation is compared too
    spec_path = shipped_spec_on(tmp_path / "tables", "amazon", tmp_path, history=history)
    spec = load_spec_data(load_spec(spec_path))
    builtin = load_amazon(config, progress=False)
    reviews = make_reviews()
    assert spec.vocabulary is not None
    assert spec.vocabulary.users.values.to_pylist() == sorted({r["reviewerID"] for r in reviews})
    assert spec.vocabulary.items.values.to_pylist() == sorted({r["asin"] for r in reviews})
    assert_same_samples(spec, builtin, ranked_ids)
    assert [f.vocab_size for f in spec.schema.fields] == [
        f.vocab_size for f in builtin.schema.fields
    ]  # the item ids too: the catalogue is the reviewed items
    np.testing.assert_array_equal(spec.latest_histories, builtin.latest_histories)
    assert (spec.histories != 0).sum(axis=1).max() == MAX_HISTORY


def test_the_temporal_spec_tests_on_the_latest_reviews(tmp_path: Path) -> None:
    source_files(tmp_path / "src")
    convert("amazon", tmp_path / "src", tmp_path / "tables")
    assert_temporal_split(tmp_path / "tables", "amazon-temporal", tmp_path)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_specs_keep_the_builtin_protocol(name: str) -> None:
    spec = load_spec(SPECS_DIR / f"{name}.yaml")
    protocol = AmazonConfig()
    assert spec.history.length == protocol.max_history
    assert spec.interactions.rating is not None
    assert spec.interactions.rating.positive_at_least == protocol.positive_threshold
    assert spec.interactions.rating.drop == ()  # every review is a sample
    assert spec.users is None and spec.items is not None
    assert [f.name for f in spec.items.features] == ["category", "brand"]
    assert spec.split.kind == ("temporal" if name.endswith("temporal") else "random")
    assert spec.split.test == protocol.test_fraction
    assert spec.split.validation == pytest.approx(
        protocol.validation_fraction * (1 - protocol.test_fraction)
    )
    if spec.split.kind == "random":
        assert spec.split.seed == protocol.seed
    assert shipped_tables(spec) == ("amazon", TABLES_ROOT / "amazon")


def test_the_convert_command_writes_interactions_and_items(tmp_path: Path) -> None:
    source_files(tmp_path / "src", "2018")
    out = tmp_path / "out"
    assert offline_main(["convert", "amazon", str(tmp_path / "src"), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["interactions.parquet", "items.parquet"]
    assert pq.read_table(out / "items.parquet").num_rows == len(set(ASINS))
    assert offline_main(["convert", "amazon", str(tmp_path / "none"), str(out)]) == 2


def test_a_folder_of_two_releases_is_refused_by_name(tmp_path: Path) -> None:
    source_files(tmp_path, "2014")
    source_files(tmp_path, "2018")
    found = r"\['Electronics_5\.json\.gz', 'reviews_Electronics_5\.json\.gz'\]"
    with pytest.raises(FileNotFoundError, match=found):
        convert_amazon(tmp_path)


def test_a_missing_metadata_file_is_named(tmp_path: Path) -> None:
    config = source_files(tmp_path)
    (tmp_path / config.meta_file).unlink()
    with pytest.raises(FileNotFoundError, match=r"meta_\*\.json"):
        convert_amazon(tmp_path)


@pytest.mark.parametrize(
    ("which", "bad_line", "problem"),
    [
        ("reviews", '{"reviewerID": "A1", "asin": "B1", "overall": 5.0', "not JSON lines"),
        ("reviews", '{"reviewerID": " ", "asin": "B", "overall": 5, "unixReviewTime": 1}',
         "line 2: 'reviewerID'"),
        ("reviews", '{"reviewerID": "A", "asin": "B", "unixReviewTime": 1}', "line 2: 'overall'"),
        ("meta", '{"brand": "x", "category": []}', "line 2: 'asin'"),
    ],
)  # fmt: skip
def test_a_malformed_line_names_its_file(
    tmp_path: Path, which: str, bad_line: str, problem: str
) -> None:
    config = source_files(tmp_path, "2018", compressed=False)
    path = tmp_path / (config.reviews_file if which == "reviews" else config.meta_file)
    lines = path.read_text().splitlines()
    lines.insert(1, bad_line)
    write(path, lines, compressed=False)
    with pytest.raises(ValueError, match=rf"{path.name}.*{problem}"):
        convert_amazon(tmp_path)
