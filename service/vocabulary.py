"""The served version's vocabularies: the caller's raw ids and feature values -> the indices its
graphs read (`prerank_contract.vocabulary` describes the files).

A version trained from a dataset spec carries a vocabulary; one from a built-in loader does not,
and its ids and feature values are the indices themselves (`identity_vocabulary`). Every lookup
works on a whole array at once (binary search over sorted values): no Python loop per id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from typing import Literal, cast

import numpy as np
import pyarrow as pa

from prerank_contract.features import PADDING_INDEX, FeatureSchema
from prerank_contract.manifest import Manifest
from prerank_contract.vocabulary import FieldVocabulary, values_from_bytes

IdKind = Literal["integer", "string"]
BUILT_IN_USER_ID = "user_id"  # the user id field of the built-in datasets' schemas
RawId = int | str
RawValue = int | float | str
FeatureValue = RawValue | list[RawValue]


class VocabularyError(ValueError):
    """A raw value this version cannot encode; `field` locates it in the request body."""

    def __init__(self, field: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.field = field


def id_kind(ids: Sequence[RawId]) -> IdKind | None:
    """How a validated id list is written (the request schema admits one kind per list); None
    when empty."""
    if not ids:
        return None
    return "string" if isinstance(ids[0], str) else "integer"


def raw_id_array(ids: Sequence[RawId]) -> np.ndarray:
    """[n] int64, or [n] object holding the strings: the ids as one array (the request schema
    admits one kind per list)."""
    if id_kind(ids) == "string":
        return np.array(ids, dtype=object)
    return np.fromiter(ids, dtype=np.int64, count=len(ids))


@dataclass(frozen=True)
class ValueIndex:
    """Raw values [V] -> indices 1..V (0: not in the vocabulary).

    Numbers: a binary search over `sorted_values` [V] ascending, `indices` [V] the index of each.
    Strings: a hash table (`index_of`), read by `dict.get` mapped over the ids inside the
    interpreter's C loop, no bytecode per id: a binary search over numpy's fixed-width text would
    first copy every id into it, which costs more than the search (measured: 5.9 ms against
    0.3 ms for 5,000 ids). `strings` [V]: the value of index i at i - 1."""

    kind: IdKind | Literal["float"]
    sorted_values: np.ndarray | None = None
    indices: np.ndarray | None = None
    index_of: dict[str, int] | None = None
    strings: list[str] | None = None

    @classmethod
    def from_arrow(cls, values: pa.Array) -> ValueIndex:
        if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
            kind: IdKind | Literal["float"] = (
                "integer" if pa.types.is_integer(values.type) else "float"
            )
            dtype = np.int64 if kind == "integer" else np.float64
            array = np.asarray(values.to_numpy(zero_copy_only=False), dtype=dtype)
            order = np.argsort(array, kind="stable")
            return cls(kind, sorted_values=array[order], indices=(order + 1).astype(np.int64))
        strings = [str(value) for value in values.to_pylist()]
        index_of = {value: index for index, value in enumerate(strings, start=1)}
        return cls("string", index_of=index_of, strings=strings)

    @property
    def size(self) -> int:
        """V: values known."""
        return len(self.strings) if self.strings is not None else len(self._sorted)

    @property
    def _sorted(self) -> np.ndarray:
        assert self.sorted_values is not None
        return self.sorted_values

    def lookup(self, values: np.ndarray | Sequence[RawValue]) -> np.ndarray:
        """values [n] (numbers, or strings in a list or an object array, as `kind`) -> indices
        [n] int64, 0 if unknown."""
        if self.index_of is not None:
            found = map(self.index_of.get, values, repeat(PADDING_INDEX))
            return np.fromiter(found, dtype=np.int64, count=len(values))
        assert self.indices is not None
        values = np.asarray(values)
        if values.size == 0 or self._sorted.size == 0:
            return np.zeros(values.size, np.int64)
        at = np.minimum(np.searchsorted(self._sorted, values), self._sorted.size - 1)
        return np.where(self._sorted[at] == values, self.indices[at], PADDING_INDEX)

    @cached_property
    def _position_of_index(self) -> np.ndarray:
        """[V + 1]: where index i sits in `sorted_values` (entry 0 unused)."""
        assert self.indices is not None
        positions = np.zeros(self.indices.size + 1, np.int64)
        positions[self.indices] = np.arange(self.indices.size)
        return positions

    def raw_of(self, indices: np.ndarray) -> list[RawValue]:
        """Indices [n] in 1..V -> their raw values, as the caller writes them."""
        if self.strings is not None:
            return [self.strings[index - 1] for index in indices.tolist()]
        return list(self._sorted[self._position_of_index[indices]].tolist())

    def accepts(self, value: object) -> bool:
        """Whether a single raw value has this vocabulary's JSON type."""
        if self.kind == "string":
            return isinstance(value, str)
        if self.kind == "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class FeatureCodec:
    """One profile field: raw value(s) -> `slots` indices."""

    name: str
    kind: str
    slots: int
    size: int
    values: ValueIndex | None = None  # ids and categories
    boundaries: np.ndarray | None = None  # numeric: index = 1 + boundaries <= value
    separator: str | None = None

    def encode(self, value: FeatureValue, at: tuple[str | int, ...]) -> list[int]:
        """One raw value (a list, or a separated string, for a multi-categorical field) -> at most
        `slots` indices; VocabularyError naming `at` for a value of the wrong type."""
        if self.boundaries is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise VocabularyError(at, "expects a number")
            if math.isnan(value):
                return [PADDING_INDEX]
            return [int(np.searchsorted(self.boundaries, value, side="right")) + 1]
        assert self.values is not None
        if self.kind == "multi_categorical":
            if isinstance(value, str) and self.separator is not None:
                # an empty part is a missing value in its slot, as the offline job reads it
                values: list[RawValue] = list(value.split(self.separator))
            elif isinstance(value, list):
                values = value
            else:
                raise VocabularyError(at, "expects a list of values")
            values = values[: self.slots]  # the offline job keeps the first `slots` too
        else:
            values = [value] if not isinstance(value, list) else value
            if len(values) != 1:
                raise VocabularyError(at, "expects one value")
        for position, item in enumerate(values):
            if not self.values.accepts(item):
                where = (*at, position) if isinstance(value, list) else at
                raise VocabularyError(where, f"expects {self.values.kind} values")
        return self.values.lookup(values).tolist()


def _check_index(spec_slots: int, size: int, value: FeatureValue, at: tuple) -> list[int]:
    """A built-in version's field value: already indices in [0, size)."""
    values = value if isinstance(value, list) else [value]
    if len(values) > spec_slots or any(
        not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < size for v in values
    ):
        raise VocabularyError(at, f"expects at most {spec_slots} indices in [0, {size})")
    return [int(v) for v in values]


@dataclass(frozen=True)
class ServingVocabulary:
    """How one version reads the caller's ids and profile values.

    `users` / `items`: None when the ids are the indices themselves (a built-in dataset);
    `features`: profile fields by name (absent ones take indices as they are)."""

    schema: FeatureSchema
    users: ValueIndex | None = None
    items: ValueIndex | None = None
    features: Mapping[str, FeatureCodec] = field(default_factory=dict)
    user_id_field: str = BUILT_IN_USER_ID

    @property
    def user_id_kind(self) -> IdKind:
        return "integer" if self.users is None else _id_kind(self.users)

    @property
    def item_id_kind(self) -> IdKind:
        return "integer" if self.items is None else _id_kind(self.items)

    def item_indices(self, ids: np.ndarray) -> np.ndarray:
        """Raw item ids [n] -> indices [n] int64 (a built-in version: the ids as they are)."""
        return ids if self.items is None else self.items.lookup(ids)

    def raw_item_ids(self, indices: np.ndarray) -> list[RawId]:
        """Item indices [n] -> the caller's ids."""
        if self.items is None:
            return list(indices.tolist())
        return cast(list[RawId], self.items.raw_of(indices))  # an id vocabulary is never float

    def raw_user_id(self, position: int) -> RawId:
        """Some user's id as the caller writes it (the `position`-th known one, wrapping)."""
        if self.users is None:
            return position
        index = 1 + position % self.users.size
        return cast(RawId, self.users.raw_of(np.asarray([index]))[0])

    def user_index(self, user_id: RawId) -> int:
        """The user id field's index: 0 (unknown) outside the vocabulary."""
        if self.users is None:
            size = self._user_id_size
            return user_id if isinstance(user_id, int) and 0 <= user_id < size else PADDING_INDEX
        return int(self.users.lookup([user_id])[0])

    @property
    def _user_id_size(self) -> int:
        sizes = [s.vocab_size for s in self.schema.user_fields if s.name == self.user_id_field]
        return sizes[0] if sizes else 0

    def encode_feature(self, name: str, value: FeatureValue, at: tuple) -> list[int]:
        """A profile field's raw value -> its indices; VocabularyError naming `at`."""
        codec = self.features.get(name)
        if codec is not None:
            return codec.encode(value, at)
        if name == self.user_id_field and self.users is not None:
            if isinstance(value, list | float) or not self.users.accepts(value):
                raise VocabularyError(at, f"expects one {self.users.kind} user id")
            return [self.user_index(value)]
        spec = next(spec for spec in self.schema.user_fields if spec.name == name)
        return _check_index(spec.slots, spec.vocab_size, value, at)


def _id_kind(index: ValueIndex) -> IdKind:
    return "string" if index.kind == "string" else "integer"


def identity_vocabulary(schema: FeatureSchema) -> ServingVocabulary:
    """A built-in version's: ids and feature values are indices already."""
    return ServingVocabulary(schema)


def serving_vocabulary(manifest: Manifest, files: Mapping[str, bytes]) -> ServingVocabulary:
    """The version's vocabulary from its verified files (identity when it has none)."""
    described = manifest.vocabulary
    if described is None:
        return identity_vocabulary(manifest.feature_schema)
    user_fields = {spec.name for spec in manifest.feature_schema.user_fields}
    indexes = {
        entry.field: ValueIndex.from_arrow(values_from_bytes(files[entry.file]))
        for entry in described.fields
        if entry.file is not None
    }
    codecs = {
        entry.field: _codec(entry, indexes.get(entry.field))
        for entry in described.fields
        if entry.field in user_fields and entry.kind != "id"
    }
    return ServingVocabulary(
        manifest.feature_schema,
        users=indexes[described.user_id_field],
        items=indexes[described.item_id_field],
        features=codecs,
        user_id_field=described.user_id_field,
    )


def _codec(entry: FieldVocabulary, values: ValueIndex | None) -> FeatureCodec:
    boundaries = None if entry.boundaries is None else np.asarray(entry.boundaries, np.float64)
    return FeatureCodec(
        entry.field, entry.kind, entry.slots, entry.size, values, boundaries, entry.separator
    )
