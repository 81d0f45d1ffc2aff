"""Feature schema: every model input field, tagged with the tower (user or item) it feeds."""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Source = Literal["user", "item"]

PADDING_INDEX = 0
"""Index 0 of every field means "missing": padding slots, unknown ids, cold-start users."""


class FieldSpec(BaseModel):
    """One categorical field. `slots` > 1 makes it multi-valued (e.g. genres), mean-pooled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: Source
    vocab_size: int = Field(gt=1, description="indices 0..vocab_size-1; 0 is padding/unknown")
    slots: int = Field(default=1, ge=1)


class FeatureSchema(BaseModel):
    """The ordered fields of a dataset. Column order of the feature matrices follows `fields`.

    The user tower reads `user_features [B, user_slots]` and `history [B, L, item_slots]`
    (each behaviour described by the same item fields as a candidate); the item tower reads
    `item_features [N, item_slots]`. The first item field is the item id.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: tuple[FieldSpec, ...]
    max_history: int = Field(gt=0, description="L: behaviours kept per user, most recent last")

    @model_validator(mode="after")
    def _check(self) -> FeatureSchema:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in {names}")
        if not self.user_fields or not self.item_fields:
            raise ValueError("the schema needs at least one user field and one item field")
        if self.item_fields[0].slots != 1:
            raise ValueError("the first item field must be the single-slot item id")
        return self

    @cached_property
    def fingerprint(self) -> str:
        """Short hash of the schema: feature-store records are only read under the same one."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    @property
    def user_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.source == "user")

    @property
    def item_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.source == "item")

    @property
    def user_slots(self) -> int:
        return sum(f.slots for f in self.user_fields)

    @property
    def item_slots(self) -> int:
        return sum(f.slots for f in self.item_fields)

    def slot_ranges(self, source: Source) -> dict[str, tuple[int, int]]:
        """Field name -> [start, stop) columns in that source's feature matrix."""
        ranges: dict[str, tuple[int, int]] = {}
        start = 0
        for spec in self.user_fields if source == "user" else self.item_fields:
            ranges[spec.name] = (start, start + spec.slots)
            start += spec.slots
        return ranges
