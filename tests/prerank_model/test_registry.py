"""The explicit name -> model mapping."""

from __future__ import annotations

import pytest

from prerank_contract.features import FeatureSchema, FieldSpec
from prerank_model.config import ModelConfig
from prerank_model.models import MODELS, build_model
from prerank_model.models.fit import FIT
from prerank_model.models.two_tower import TwoTower

SCHEMA = FeatureSchema(
    fields=(
        FieldSpec(name="user_id", source="user", vocab_size=5),
        FieldSpec(name="item_id", source="item", vocab_size=5),
    ),
    max_history=3,
)
CONFIG = ModelConfig(embedding_dim=2, tower_hidden=(), head_dim=2, num_meta_queries=2)


def test_known_names_build_their_class() -> None:
    assert type(build_model("fit", SCHEMA, CONFIG)) is FIT
    assert type(build_model("two_tower", SCHEMA, CONFIG)) is TwoTower


def test_unknown_name_raises_listing_the_known_names() -> None:
    with pytest.raises(ValueError, match="'cold'") as raised:
        build_model("cold", SCHEMA, CONFIG)
    assert sorted(MODELS) == ["fit", "two_tower"]
    for name in MODELS:
        assert repr(name) in str(raised.value)
