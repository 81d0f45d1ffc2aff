"""Feature schema: the tower split, slot layout and validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from prerank_contract.features import FeatureSchema, FieldSpec


def schema(*fields: FieldSpec) -> FeatureSchema:
    return FeatureSchema(fields=fields, max_history=5)


def test_fields_split_by_source_and_slots_laid_out_in_order() -> None:
    s = schema(
        FieldSpec(name="user_id", source="user", vocab_size=10),
        FieldSpec(name="item_id", source="item", vocab_size=20),
        FieldSpec(name="genres", source="item", vocab_size=5, slots=3),
        FieldSpec(name="year", source="item", vocab_size=4),
    )
    assert [f.name for f in s.user_fields] == ["user_id"]
    assert s.item_slots == 5
    assert s.slot_ranges("item") == {"item_id": (0, 1), "genres": (1, 4), "year": (4, 5)}


def test_duplicate_names_refused() -> None:
    with pytest.raises(ValidationError, match="duplicate"):
        schema(
            FieldSpec(name="x", source="user", vocab_size=3),
            FieldSpec(name="x", source="item", vocab_size=3),
        )


def test_item_id_must_lead_the_item_fields() -> None:
    with pytest.raises(ValidationError, match="item id"):
        schema(
            FieldSpec(name="u", source="user", vocab_size=3),
            FieldSpec(name="genres", source="item", vocab_size=3, slots=2),
        )


def test_a_tower_without_fields_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least one user field"):
        schema(FieldSpec(name="item_id", source="item", vocab_size=3))
