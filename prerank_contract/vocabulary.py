"""A version's vocabularies: how it maps raw ids and raw feature values to the indices its graphs
read. A bundle trained from a dataset spec carries them (the manifest's `vocabulary`, the value
lists as files), so they are checksummed, published and swapped with the version itself.

Files: `vocab.{field}.arrow`, an Arrow IPC file with one column `value` whose row r is the raw
value of index r + 1 (index 0: missing or out of vocabulary). Numeric fields keep their bucket
boundaries in the manifest: value v has index 1 + the number of boundaries <= v.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

EncoderKind = Literal["id", "categorical", "numeric", "multi_categorical"]
ValueType = Literal["integer", "string", "float"]
VALUE_COLUMN = "value"


class FieldVocabulary(BaseModel):
    """One field's map from raw values to indices 0..size-1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(description="the feature schema's field name")
    kind: EncoderKind
    size: int = Field(gt=1, description="indices 0..size-1, as the schema's vocab_size")
    slots: int = Field(default=1, ge=1, description="values kept per row (multi_categorical)")
    separator: str | None = Field(default=None, description="splits a string of several values")
    value_type: ValueType | None = Field(default=None, description="of the raw values listed")
    file: str | None = Field(default=None, description="the value list (ids and categories)")
    boundaries: list[float] | None = Field(default=None, description="numeric bucket edges")


class BundleVocabulary(BaseModel):
    """Every map of a version: the user and item id fields first, then each feature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id_field: str
    item_id_field: str
    fields: list[FieldVocabulary]

    def of(self, field: str) -> FieldVocabulary:
        return next(f for f in self.fields if f.field == field)


def vocabulary_file(field: str) -> str:
    return f"vocab.{field}.arrow"


def value_type(values: pa.Array) -> ValueType:
    if pa.types.is_integer(values.type):
        return "integer"
    if pa.types.is_floating(values.type):
        return "float"
    return "string"


def write_values(path: Path, values: pa.Array) -> None:
    """A value list as an Arrow IPC file (read back memory-mapped, without a copy)."""
    table = pa.table({VALUE_COLUMN: values})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def read_values(path: Path) -> pa.Array:
    """The value list written by `write_values`: [V]."""
    source = pa.memory_map(str(path))  # the arrays keep the map open as long as they live
    return pa.ipc.open_file(source).read_all().column(VALUE_COLUMN).combine_chunks()


def values_from_bytes(data: bytes) -> pa.Array:
    """A value file's bytes (as a version published to Redis carries them) -> its values [V]."""
    return pa.ipc.open_file(pa.BufferReader(data)).read_all().column(VALUE_COLUMN).combine_chunks()
