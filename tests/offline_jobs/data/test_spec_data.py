"""A team's own files through their spec: what comes out is the data the files say, the same from
Parquet and from CSV, with string ids, raw values and ISO times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from offline_jobs.data.example import ExampleFiles, write_example
from offline_jobs.data.spec import load_spec
from offline_jobs.data.spec_data import load_spec_data
from prerank_contract.features import PADDING_INDEX


@pytest.fixture(scope="module")
def shop(tiny_data, tmp_path_factory) -> ExampleFiles:
    return write_example(tiny_data, tmp_path_factory.mktemp("shop"))


def test_parquet_and_csv_give_the_same_data(shop: ExampleFiles, tiny_data, tmp_path: Path) -> None:
    from_parquet = load_spec_data(load_spec(shop.spec))
    from_csv = load_spec_data(load_spec(write_example(tiny_data, tmp_path, "csv").spec))
    assert from_parquet.fingerprint() == from_csv.fingerprint()
    assert from_parquet.vocabulary is not None
    assert from_parquet.vocabulary.items.values.to_pylist() == shop.items  # sorted raw ids
    assert from_parquet.num_users == tiny_data.num_users
    assert from_parquet.num_items == tiny_data.num_items


def test_every_sample_is_a_row_of_the_log_with_its_history(shop: ExampleFiles, tiny_data) -> None:
    data = load_spec_data(load_spec(shop.spec))
    assert data.vocabulary is not None
    users = data.vocabulary.users.values.to_pylist()
    items = data.vocabulary.items.values.to_pylist()
    log = sorted(
        (shop.users[u - 1], shop.items[i - 1], int(label))
        for u, i, label in zip(
            tiny_data.user_ids, tiny_data.item_ids, tiny_data.labels, strict=True
        )
    )
    read = sorted(
        (users[u - 1], items[i - 1], int(label))
        for u, i, label in zip(data.user_ids, data.item_ids, data.labels, strict=True)
    )
    assert read == log
    # each history: the user's positives strictly before the sample, most recent last
    for s in range(0, data.user_ids.size, 97):
        mine = (data.user_ids == data.user_ids[s]) & (data.labels == 1)
        earlier = mine & (data.timestamps < data.timestamps[s])
        order = np.lexsort((data.item_ids[earlier], data.timestamps[earlier]))
        expected = data.item_ids[earlier][order][-data.schema.max_history :]
        history = data.histories[s]
        assert history[history != PADDING_INDEX].tolist() == expected.tolist()


def test_the_temporal_split_puts_the_latest_samples_in_test(shop: ExampleFiles) -> None:
    data = load_spec_data(load_spec(shop.spec))
    train, validation, test = (
        data.timestamps[data.splits[s]] for s in ("train", "validation", "test")
    )
    assert train.max() <= validation.min() and validation.max() <= test.min()
    assert test.size == round(0.1 * data.user_ids.size)


def test_features_are_encoded_by_the_vocabularies(shop: ExampleFiles, tiny_data) -> None:
    data = load_spec_data(load_spec(shop.spec))
    vocabulary = data.vocabulary
    assert vocabulary is not None
    ranges = data.schema.slot_ranges("item")
    tags = vocabulary.features["tags"]
    row = data.item_features[1]  # internal item 1 = the first id in sorted order
    start, stop = ranges["tags"]
    raw_tags = tags.values.to_pylist()
    brand, category = tiny_data.item_features[1, 2], tiny_data.item_features[1, 1]
    assert [raw_tags[v - 1] for v in row[start:stop]] == [f"b{brand}", f"c{category}"]  # 2 kept
    assert data.details["truncated_tags"] == tiny_data.num_items  # every item had 3 tags
    age = vocabulary.features["age"]
    assert age.boundaries is not None and 1 <= age.boundaries.size <= 3  # 4 buckets at most
    trained = np.unique(data.user_ids[data.splits["train"]])
    ages = data.user_features[trained, data.schema.slot_ranges("user")["age"][0]]
    assert set(ages.tolist()) <= set(range(1, age.vocab_size))


def test_a_list_column_reads_as_the_separated_string(shop: ExampleFiles, tmp_path: Path) -> None:
    items = pq.read_table(shop.folder / "items.parquet")
    lists = pa.array([value.split("|") for value in items.column("tags").to_pylist()])
    pq.write_table(items.set_column(2, "tags", lists), tmp_path / "items.parquet")
    for name in ("interactions.parquet", "users.parquet"):
        (tmp_path / name).write_bytes((shop.folder / name).read_bytes())
    spec = tmp_path / "spec.yaml"
    spec.write_text(shop.spec.read_text())
    assert (
        load_spec_data(load_spec(spec)).fingerprint()
        == load_spec_data(load_spec(shop.spec)).fingerprint()
    )


def test_every_version_of_a_spec_dataset_shares_one_feature_store(
    shop: ExampleFiles, tiny_data, tmp_path: Path
) -> None:
    """Raw records serve any version trained on the dataset: a log with fewer items (so other
    vocabularies and another schema) writes to the same store; records of indices do not."""
    data = load_spec_data(load_spec(shop.spec))
    log = pq.read_table(shop.folder / "interactions.parquet")
    fewer = log.filter(pc.not_equal(log.column("item_id"), shop.items[-1]))
    (tmp_path / "users.parquet").write_bytes((shop.folder / "users.parquet").read_bytes())
    pq.write_table(fewer, tmp_path / "interactions.parquet")
    spec = tmp_path / "spec.yaml"
    spec.write_text(shop.spec.read_text())
    items = pq.read_table(shop.folder / "items.parquet")
    pq.write_table(
        items.filter(pc.not_equal(items.column("item_id"), shop.items[-1])),
        tmp_path / "items.parquet",
    )
    other = load_spec_data(load_spec(spec))
    assert other.schema.fingerprint != data.schema.fingerprint
    assert other.feature_store == data.feature_store != data.schema.fingerprint
    assert tiny_data.feature_store == tiny_data.schema.fingerprint  # a built-in loader's indices
