"""The explicit name -> model mapping."""

from __future__ import annotations

import pytest

from prerank_contract.features import FeatureSchema, FieldSpec
from prerank_model.config import ModelConfig
from prerank_model.models import MODELS, build_model
from prerank_model.models.cold import COLD
from prerank_model.models.dat import DAT
from prerank_model.models.fit import FIT
from prerank_model.models.int_tower import IntTower
from prerank_model.models.rank_tower import RankTower
from prerank_model.models.two_tower import TwoTower

CLASSES = {
    "two_tower": TwoTower,
    "dat": DAT,
    "cold": COLD,
    "inttower": IntTower,
    "ranktower": RankTower,
    "fit": FIT,
    "fit_no_mqm": FIT,
    "fit_no_lss": FIT,
    "fit_summax": FIT,
    "fit_fc": FIT,
}

SCHEMA = FeatureSchema(
    fields=(
        FieldSpec(name="user_id", source="user", vocab_size=5),
        FieldSpec(name="item_id", source="item", vocab_size=5),
    ),
    max_history=3,
)
CONFIG = ModelConfig(embedding_dim=2, tower_hidden=(), head_dim=2, num_meta_queries=2)


def test_every_name_builds_its_class_and_reports_that_name() -> None:
    assert sorted(MODELS) == sorted(CLASSES)
    for name, cls in CLASSES.items():
        model = build_model(name, SCHEMA, CONFIG)
        assert type(model) is cls
        assert model.name == name


def test_only_cold_is_pairwise() -> None:
    kinds = {name: build_model(name, SCHEMA, CONFIG).kind for name in MODELS}
    assert {name for name, kind in kinds.items() if kind == "pairwise"} == {"cold"}


def test_unknown_name_raises_listing_the_known_names() -> None:
    with pytest.raises(ValueError, match="'nope'") as raised:
        build_model("nope", SCHEMA, CONFIG)
    for name in MODELS:
        assert repr(name) in str(raised.value)
