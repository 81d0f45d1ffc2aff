"""The in-memory form every data source produces, and the batches the trainer reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np

from prerank_contract.features import PADDING_INDEX, FeatureSchema
from prerank_contract.keys import feature_store_id

if TYPE_CHECKING:  # pyarrow is only loaded by the spec loader that builds vocabularies
    import pyarrow as pa

    from offline_jobs.data.vocabulary import Vocabulary

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class InteractionData:
    """Users, items and labelled (user, item, time) samples with their behaviour sequences.

    Ids are positive integers and double as row numbers: row 0 of both feature tables is the
    padding / unknown row.

    Attributes:
        schema: the feature schema (field order = column order).
        user_features: [M+1, user_slots] int64, row = user id.
        item_features: [N+1, item_slots] int64, row = item id; column 0 is the item id field.
        catalogue: [N_items] int64, the item ids that exist (servable candidates), sorted.
        user_ids, item_ids: [n] int64 per sample.
        labels: [n] float32 in {0, 1}.
        timestamps: [n] int64.
        histories: [n, L] int64 item ids of the user's positive behaviours strictly before the
            sample's timestamp, most recent last, left-padded with 0.
        latest_histories: [M+1, L] int64, each user's history after all of their samples (what
            the online feature store serves).
        splits: split name -> sample indices.
        sample_user_features: None, or [n, user_slots] int64, each sample's own user row, read by
            `make_batch` instead of `user_features[user_ids]` (for a feature whose value depends on
            the sample, not only on the user: MovieLens' split-wise mean ratings). The table
            still feeds the feature store, which never sees these values.
        sample_item_features: None, or [n, item_slots] int64, likewise for the candidate item;
            histories and the precomputed catalogue still read `item_features`.
        vocabulary: for data read from a dataset spec, the raw id and value -> index maps (row
            i of a feature table is the id `vocabulary.users/items.values[i - 1]`); None for the
            built-in loaders, whose ids are the row numbers.
        raw_profiles: for data read from a spec with a users table, its raw feature values
            [M+1 rows, one column per user feature; row = user id, null where the table has no
            row; a multi-categorical value as a list], what the feature store's records hold.
    """

    name: str
    schema: FeatureSchema
    user_features: np.ndarray
    item_features: np.ndarray
    catalogue: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    labels: np.ndarray
    timestamps: np.ndarray
    histories: np.ndarray
    latest_histories: np.ndarray
    splits: dict[str, np.ndarray]
    details: dict[str, object] = field(default_factory=dict)
    sample_user_features: np.ndarray | None = None
    sample_item_features: np.ndarray | None = None
    vocabulary: Vocabulary | None = None
    raw_profiles: pa.Table | None = None

    def __post_init__(self) -> None:
        n = self.user_ids.shape[0]
        for name, override, table in (
            ("sample_user_features", self.sample_user_features, self.user_features),
            ("sample_item_features", self.sample_item_features, self.item_features),
        ):
            if override is not None and override.shape != (n, table.shape[1]):
                raise ValueError(
                    f"{name} has shape {override.shape}, expected {(n, table.shape[1])}"
                )

    @property
    def num_users(self) -> int:
        return int(self.user_features.shape[0] - 1)

    @property
    def num_items(self) -> int:
        return int(self.catalogue.shape[0])

    @property
    def feature_store(self) -> str:
        """The feature store its records go to (`prerank_contract.keys.feature_store_id`)."""
        return feature_store_id(self.schema.fingerprint, self.name, self.vocabulary is not None)

    def fingerprint(self) -> str:
        """sha256 over the schema and every array: equal data <=> equal fingerprint."""
        digest = hashlib.sha256(self.schema.model_dump_json().encode())
        for array in (
            self.user_features,
            self.item_features,
            self.catalogue,
            self.user_ids,
            self.item_ids,
            self.labels,
            self.timestamps,
            self.histories,
            self.latest_histories,
        ):
            digest.update(np.ascontiguousarray(array).tobytes())
        for split in SPLITS:
            digest.update(np.ascontiguousarray(self.splits[split]).tobytes())
        # Only when present, so that data without overrides keeps its fingerprint.
        for name, override in (
            ("sample_user_features", self.sample_user_features),
            ("sample_item_features", self.sample_item_features),
        ):
            if override is not None:
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(override).tobytes())
        if self.vocabulary is not None:  # the same indices for other raw ids are other data
            digest.update(self.vocabulary.digest())
        return digest.hexdigest()

    def user_record(self, user_id: int) -> dict[str, object]:
        """The feature-store record of one user: profile by field name + latest history."""
        row = self.user_features[user_id]
        features: dict[str, object] = {}
        for name, (start, stop) in self.schema.slot_ranges("user").items():
            values = [int(v) for v in row[start:stop]]
            features[name] = values[0] if stop - start == 1 else values
        history = self.latest_histories[user_id]
        return {"features": features, "history": [int(i) for i in history if i != PADDING_INDEX]}


def left_pad(sequence: list[int] | np.ndarray, length: int) -> np.ndarray:
    """The last `length` elements, left-padded with PADDING_INDEX: [length] int64."""
    tail = np.asarray(sequence, dtype=np.int64)[-length:] if length else np.zeros(0, np.int64)
    out = np.full(length, PADDING_INDEX, dtype=np.int64)
    if tail.size:
        out[length - tail.size :] = tail
    return out


def random_split(
    n: int, rng: np.random.Generator, test_fraction: float, validation_fraction: float
) -> dict[str, np.ndarray]:
    """Random train/validation/test split of sample indices (validation carved from train)."""
    order = rng.permutation(n)
    n_test = round(n * test_fraction)
    n_validation = round((n - n_test) * validation_fraction)
    return {
        "test": np.sort(order[:n_test]),
        "validation": np.sort(order[n_test : n_test + n_validation]),
        "train": np.sort(order[n_test + n_validation :]),
    }


@dataclass(frozen=True)
class Batch:
    """Numpy arrays of one batch of samples, ready for `torch.from_numpy`.

    user_features [B, user_slots], history [B, L, item_slots], item_features [B, item_slots],
    labels [B].
    """

    user_features: np.ndarray
    history: np.ndarray
    item_features: np.ndarray
    labels: np.ndarray


def make_batch(data: InteractionData, indices: np.ndarray) -> Batch:
    """The samples' rows: per-sample overrides where the data has them, else the table rows."""
    return SampleRows.of(data, indices).gather(data.user_features, data.item_features)


def gather_batch(
    user_table: np.ndarray,
    item_table: np.ndarray,
    *,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    labels: np.ndarray,
    histories: np.ndarray,
    sample_user_features: np.ndarray | None = None,
    sample_item_features: np.ndarray | None = None,
) -> Batch:
    """A batch from B samples' own columns and the feature tables: the one place rows become
    model inputs, for in-memory data (`make_batch`) and for an on-disk store alike.

    user_table [M+1, S_u], item_table [N+1, S_i]; user_ids, item_ids [B], labels [B],
    histories [B, L]; the optional per-sample overrides [B, S_u] and [B, S_i] replace the table
    rows of the user and of the candidate (never those of the history items).
    """
    return Batch(
        user_features=(
            user_table[user_ids] if sample_user_features is None else sample_user_features
        ),
        history=item_table[histories],
        item_features=(
            item_table[item_ids] if sample_item_features is None else sample_item_features
        ),
        labels=labels,
    )


@dataclass(frozen=True)
class SampleRows:
    """The per-sample columns of n samples (one chunk, one batch, one block of users).

    user_ids, item_ids, timestamps [n] int64; labels [n] float32; histories [n, L] int64;
    sample_user_features [n, S_u] / sample_item_features [n, S_i] int64, or None.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    labels: np.ndarray
    timestamps: np.ndarray
    histories: np.ndarray
    sample_user_features: np.ndarray | None = None
    sample_item_features: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        """Column name -> array, the optional columns only where present."""
        found = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: array for name, array in found.items() if array is not None}

    def take(self, rows: np.ndarray) -> SampleRows:
        """The rows `rows` (positions in this block), in that order: a copy."""
        return SampleRows(**{name: array[rows] for name, array in self.columns().items()})

    @classmethod
    def of(cls, data: InteractionData, indices: np.ndarray) -> SampleRows:
        """Samples `indices` of in-memory data."""
        return cls(
            user_ids=data.user_ids[indices],
            item_ids=data.item_ids[indices],
            labels=data.labels[indices],
            timestamps=data.timestamps[indices],
            histories=data.histories[indices],
            sample_user_features=(
                None if data.sample_user_features is None else data.sample_user_features[indices]
            ),
            sample_item_features=(
                None if data.sample_item_features is None else data.sample_item_features[indices]
            ),
        )

    @classmethod
    def concat(cls, parts: list[SampleRows]) -> SampleRows:
        names = parts[0].columns().keys()
        return cls(**{name: np.concatenate([p.columns()[name] for p in parts]) for name in names})

    def gather(self, user_table: np.ndarray, item_table: np.ndarray) -> Batch:
        """These samples as one training batch, their rows gathered from the feature tables
        (`gather_batch`)."""
        return gather_batch(
            user_table,
            item_table,
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            labels=self.labels,
            histories=self.histories,
            sample_user_features=self.sample_user_features,
            sample_item_features=self.sample_item_features,
        )
