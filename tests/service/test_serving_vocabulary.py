"""The service encodes a raw value exactly as the offline job encoded it for training: the same
index for every id, category, multi-categorical list and number, through the bundle's files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from offline_jobs.data.vocabulary import (
    bucketize,
    categorical_encoder,
    id_encoder,
    multi_categorical_encoder,
    numeric_encoder,
)
from prerank_contract.features import PADDING_INDEX
from prerank_contract.vocabulary import read_values
from service.vocabulary import FeatureCodec, ValueIndex, VocabularyError, raw_id_array

RNG_SEED = 3


def through_the_bundle(values: pa.Array, folder: Path) -> ValueIndex:
    """An encoder's value list written as a bundle carries it and read back as the service does."""
    encoder = id_encoder("field", values)
    encoder.write(folder)
    return ValueIndex.from_arrow(read_values(folder / "vocab.field.arrow"))


@pytest.mark.parametrize("kind", ["string", "integer", "float"])
def test_every_id_maps_to_the_training_index(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(RNG_SEED)
    numbers = rng.choice(10**12, size=500, replace=False)
    if kind == "string":
        known = pa.array([f"sku-{n}" for n in numbers])
        unknown = ["sku-x", "", "SKU-1"]
    elif kind == "integer":
        known, unknown = pa.array(numbers - 5 * 10**11), [10**13, -(10**13)]
    else:
        known, unknown = pa.array(numbers / 7.0), [0.5e-3, -1.0]
    index = through_the_bundle(known, tmp_path)
    asked = [*known.to_pylist(), *unknown]
    offline = id_encoder("field", known).index_of(pa.array(asked))
    online = index.lookup(raw_id_array(asked) if kind != "float" else np.asarray(asked))
    np.testing.assert_array_equal(online, offline)
    assert (online[-len(unknown) :] == PADDING_INDEX).all()
    assert index.raw_of(online[:5]) == asked[:5]


def test_categories_numbers_and_lists_encode_as_offline(tmp_path: Path) -> None:
    column = pa.array(["a", "b", "b", "c", "rare"])
    category = categorical_encoder("colour", column, min_count=1)
    lists = pa.array(["x|y", "y||z", "", "z|x|y|w"])
    tags = multi_categorical_encoder("tags", lists, 1, "|", slots=3)
    ages = numeric_encoder("age", np.array([18.0, 25, 31, 44, 60, 70]), buckets=4)
    for encoder in (category, tags):
        encoder.write(tmp_path)
    online_category = FeatureCodec(
        "colour", "categorical", 1, category.vocab_size,
        ValueIndex.from_arrow(read_values(tmp_path / "vocab.colour.arrow")),
    )  # fmt: skip
    online_tags = FeatureCodec(
        "tags", "multi_categorical", 3, tags.vocab_size,
        ValueIndex.from_arrow(read_values(tmp_path / "vocab.tags.arrow")), separator="|",
    )  # fmt: skip
    online_age = FeatureCodec("age", "numeric", 1, ages.vocab_size, boundaries=ages.boundaries)
    for value, expected in zip(column.to_pylist(), category.encode(column), strict=True):
        assert online_category.encode(value, ("f",)) == [expected]
    for value, expected in zip(lists.to_pylist(), tags.encode(lists), strict=True):
        encoded = online_tags.encode(value, ("f",))
        assert encoded == expected[: len(encoded)].tolist()
        assert (expected[len(encoded) :] == PADDING_INDEX).all()
    assert ages.boundaries is not None
    for age in (0.0, 18.0, 30.5, 44.0, 99.0):
        assert online_age.encode(age, ("f",)) == [
            int(bucketize(pa.array([age]), ages.boundaries)[0])
        ]
    assert online_age.encode(float("nan"), ("f",)) == [PADDING_INDEX]


def test_a_value_of_the_wrong_type_names_where_it_is(tmp_path: Path) -> None:
    category = categorical_encoder("colour", pa.array(["a", "b"]), min_count=1)
    category.write(tmp_path)
    codec = FeatureCodec(
        "colour", "categorical", 1, category.vocab_size,
        ValueIndex.from_arrow(read_values(tmp_path / "vocab.colour.arrow")),
    )  # fmt: skip
    for value in (3, 1.5, ["a", "b"]):
        with pytest.raises(VocabularyError) as raised:
            codec.encode(value, ("user_features", "colour"))
        assert raised.value.field == ("user_features", "colour")
    age = FeatureCodec("age", "numeric", 1, 4, boundaries=np.array([1.0, 2.0]))
    with pytest.raises(VocabularyError, match="expects a number"):
        age.encode("old", ("user_features", "age"))
