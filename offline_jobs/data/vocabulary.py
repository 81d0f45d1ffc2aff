"""Raw value -> index maps of a dataset read from a spec: ids, categorical and multi-categorical
values, numeric bucket boundaries. Index 0 (`PADDING_INDEX`) is missing or out of vocabulary;
known values are 1..V in sorted order, so the same data always gives the same indices.

Every map encodes a whole Arrow column at once (`pyarrow.compute.index_in`, `np.searchsorted`):
no Python loop per row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prerank_contract.features import PADDING_INDEX
from prerank_contract.vocabulary import (
    BundleVocabulary,
    FieldVocabulary,
    value_type,
    vocabulary_file,
    write_values,
)

EncoderKind = Literal["id", "categorical", "numeric", "multi_categorical"]
IdKind = Literal["integer", "string"]


@dataclass(frozen=True)
class FieldEncoder:
    """One field's map. `values` [V] (ids and categories: index = position + 1) or `boundaries`
    [B - 1] (numeric: index = bucket + 1); `slots` values per row (multi-categorical)."""

    name: str
    kind: EncoderKind
    values: pa.Array | None = None
    boundaries: np.ndarray | None = None
    slots: int = 1
    separator: str | None = None

    @property
    def vocab_size(self) -> int:
        """Indices 0..vocab_size-1."""
        if self.boundaries is not None:
            return int(self.boundaries.size) + 2
        assert self.values is not None
        return len(self.values) + 1

    def encode(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Raw column [n] -> indices [n] (or [n, slots] for a multi-categorical field)."""
        if self.kind == "numeric":
            return bucketize(column, self._boundaries)
        if self.kind == "multi_categorical":
            return self.encode_lists(column)[0]
        return self.index_of(column)

    def index_of(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Indices [n] of single values: 1..V, 0 where missing or unknown."""
        assert self.values is not None
        found = pc.index_in(column, value_set=self.values)
        return pc.add(found, 1).fill_null(PADDING_INDEX).to_numpy().astype(np.int64)

    def encode_lists(self, column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, int]:
        """A multi-categorical column -> indices [n, slots], and the number of rows that held
        more than `slots` values (only their first `slots` are kept)."""
        lists = as_lists(column, self.separator)
        rows, positions, values = flatten_lists(lists)
        out = np.zeros((len(lists), self.slots), dtype=np.int64)
        kept = positions < self.slots
        out[rows[kept], positions[kept]] = self.index_of(values)[kept]
        lengths = np.bincount(rows, minlength=len(lists))
        return out, int((lengths > self.slots).sum())

    @property
    def _boundaries(self) -> np.ndarray:
        assert self.boundaries is not None
        return self.boundaries

    def write(self, folder: Path) -> FieldVocabulary:
        """This map as a bundle carries it: its value list as a file in `folder`."""
        if self.values is None:
            return FieldVocabulary(
                field=self.name,
                kind=self.kind,
                size=self.vocab_size,
                boundaries=self._boundaries.tolist(),
            )
        name = vocabulary_file(self.name)
        write_values(folder / name, self.values)
        return FieldVocabulary(
            field=self.name,
            kind=self.kind,
            size=self.vocab_size,
            slots=self.slots,
            separator=self.separator,
            value_type=value_type(self.values),
            file=name,
        )

    def digest(self) -> bytes:
        """What the encoder maps, for a dataset's fingerprint."""
        digest = hashlib.sha256(f"{self.name}:{self.kind}:{self.slots}:{self.separator}".encode())
        if self.values is not None:
            digest.update(str(self.values.type).encode())
            for buffer in self.values.buffers():
                if buffer is not None:
                    digest.update(buffer)
        if self.boundaries is not None:
            digest.update(self.boundaries.tobytes())
        return digest.digest()


def sorted_unique(column: pa.Array | pa.ChunkedArray, min_count: int = 1) -> pa.Array:
    """The distinct non-null values seen at least `min_count` times, sorted: [V]."""
    counts = pc.value_counts(pc.drop_null(column))
    values = counts.field("values")
    if min_count > 1:
        values = values.filter(pc.greater_equal(counts.field("counts"), min_count))
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = values.filter(pc.not_equal(values, ""))  # an empty string is a missing value
    return values.take(pc.array_sort_indices(values))


def id_encoder(name: str, *columns: pa.Array | pa.ChunkedArray) -> FieldEncoder:
    """Ids: every distinct id of `columns` (all of one type) -> 1..V."""
    return FieldEncoder(name, "id", values=sorted_unique(_joined(columns)))


def indexed_ids(
    name: str, column: pa.Array | pa.ChunkedArray, *others: pa.Array | pa.ChunkedArray
) -> tuple[FieldEncoder, np.ndarray]:
    """`id_encoder(name, column, *others)` and its `index_of(column)` [n], from one hash pass
    over the rows: each row's code in the distinct ids, then each distinct id's index."""
    joined = _joined((column, *others))
    encoded = pc.dictionary_encode(joined)
    if encoded.num_chunks == 0:
        return id_encoder(name, joined), np.zeros(0, dtype=np.int64)
    # Arrow gives every chunk the one dictionary of all its values (the same object: equal at
    # once); should it not, they are unified.
    dictionary = encoded.chunk(0).dictionary
    if not all(chunk.dictionary.equals(dictionary) for chunk in encoded.chunks):
        encoded = encoded.unify_dictionaries()
        dictionary = encoded.chunk(0).dictionary
    encoder = FieldEncoder(name, "id", values=sorted_unique(dictionary))
    # A null row's code points past the dictionary, at the missing index.
    index_of_code = np.append(encoder.index_of(dictionary), PADDING_INDEX)
    codes = [
        pc.fill_null(chunk.indices, len(dictionary)).to_numpy()
        for chunk in encoded.slice(0, len(column)).chunks
    ]
    return encoder, index_of_code[np.concatenate(codes) if codes else np.zeros(0, np.int64)]


def _joined(columns: tuple[pa.Array | pa.ChunkedArray, ...]) -> pa.ChunkedArray:
    return pa.chunked_array(
        [chunk for column in columns for chunk in _chunks(column)], type=columns[0].type
    )


def categorical_encoder(
    name: str, column: pa.Array | pa.ChunkedArray, min_count: int
) -> FieldEncoder:
    return FieldEncoder(name, "categorical", values=sorted_unique(column, min_count))


def multi_categorical_encoder(
    name: str,
    column: pa.Array | pa.ChunkedArray,
    min_count: int,
    separator: str | None,
    slots: int,
) -> FieldEncoder:
    _, _, values = flatten_lists(as_lists(column, separator))
    return FieldEncoder(
        name,
        "multi_categorical",
        values=sorted_unique(values, min_count),
        slots=slots,
        separator=separator,
    )


def numeric_encoder(name: str, training_values: np.ndarray, buckets: int) -> FieldEncoder:
    """Quantile buckets of `training_values` (NaN ignored): up to `buckets` buckets, fewer when
    quantiles coincide."""
    finite = training_values[np.isfinite(training_values)]
    if finite.size == 0:
        boundaries = np.zeros(0)
    else:
        inner = np.linspace(0, 1, buckets + 1)[1:-1]
        boundaries = np.unique(np.quantile(finite, inner))
    return FieldEncoder(name, "numeric", boundaries=boundaries.astype(np.float64))


def bucketize(column: pa.Array | pa.ChunkedArray, boundaries: np.ndarray) -> np.ndarray:
    """Bucket indices [n]: 1 + the number of boundaries <= value; 0 where missing."""
    values = as_floats(column)
    indices = np.searchsorted(boundaries, values, side="right") + 1
    return np.where(np.isnan(values), PADDING_INDEX, indices).astype(np.int64)


def as_floats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float64 [n], NaN where missing."""
    floats = pc.cast(column, pa.float64())
    if isinstance(floats, pa.ChunkedArray):
        floats = floats.combine_chunks()
    return np.asarray(floats.to_numpy(zero_copy_only=False), dtype=np.float64)


def as_lists(column: pa.Array | pa.ChunkedArray, separator: str | None) -> pa.Array:
    """A list column as it is, or a string column split at `separator`."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return column
    if separator is None:
        raise ValueError("a string column needs a `separator` to hold several values")
    return pc.split_pattern(pc.cast(column, pa.string()), separator)


def flatten_lists(lists: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(row [m], position within its row [m], value [m]) of every value of every list."""
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy().astype(np.int64)
    rows = np.repeat(np.arange(len(lists), dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    positions = np.arange(rows.size, dtype=np.int64) - np.repeat(starts, lengths)
    return rows, positions, pc.list_flatten(lists)


def _chunks(column: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


@dataclass(frozen=True)
class Vocabulary:
    """Every map of a dataset: the user and item ids, then each feature by field name."""

    users: FieldEncoder
    items: FieldEncoder
    features: dict[str, FieldEncoder]

    @property
    def id_kind(self) -> IdKind:
        """How the item ids are written (the user ids may differ: `kind_of(self.users)`)."""
        return kind_of(self.items)

    def digest(self) -> bytes:
        digest = hashlib.sha256(self.users.digest() + self.items.digest())
        for name in sorted(self.features):
            digest.update(self.features[name].digest())
        return digest.digest()

    def write(self, folder: Path) -> BundleVocabulary:
        """Every value list into `folder` (`prerank_contract.vocabulary` files); the manifest's
        description of them."""
        encoders = [self.users, self.items, *self.features.values()]
        return BundleVocabulary(
            user_id_field=self.users.name,
            item_id_field=self.items.name,
            fields=[encoder.write(folder) for encoder in encoders],
        )


def kind_of(encoder: FieldEncoder) -> IdKind:
    assert encoder.values is not None
    return "integer" if pa.types.is_integer(encoder.values.type) else "string"
