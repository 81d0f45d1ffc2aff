"""A dataset spec's files -> `InteractionData`: the one path from a team's own log to training.

interactions (+ users, items tables) -> labels (a 0/1 column, a rating threshold, or sampled
negatives for a log of positives) -> id vocabularies (raw id -> 1..V) -> split (temporal or
random) -> each sample's history of earlier positives -> feature tables encoded by vocabularies
learned from the tables (numeric buckets from the training split's entities).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from offline_jobs.data.common import histories_before
from offline_jobs.data.dataset import SPLITS, InteractionData
from offline_jobs.data.spec import DatasetSpec, FeatureColumn, NegativesSpec, SplitSpec, TableSpec
from offline_jobs.data.tabular import (
    as_float_array,
    binary_labels,
    id_column,
    read_table,
    same_id_types,
    timestamps,
    unique_keys,
)
from offline_jobs.data.vocabulary import (
    FieldEncoder,
    Vocabulary,
    as_floats,
    as_lists,
    categorical_encoder,
    id_encoder,
    indexed_ids,
    multi_categorical_encoder,
    numeric_encoder,
)
from prerank_contract.features import FeatureSchema, FieldSpec, Source

log = logging.getLogger(__name__)

MAX_RESAMPLE_ROUNDS = 50  # redraws of negatives that hit their own positive, before giving up
USER_ID, ITEM_ID = "user_id", "item_id"


@dataclass(frozen=True)
class Events:
    """The interactions kept, one row each: raw ids [n], times [n] int64, labels [n] float32
    (all 1 for a log of positives), and each row's 1-based row in the file [n]."""

    users: pa.ChunkedArray
    items: pa.ChunkedArray
    times: np.ndarray
    labels: np.ndarray
    rows: np.ndarray

    def take(self, mask: np.ndarray) -> Events:
        keep = pa.array(mask)
        return Events(
            self.users.filter(keep),
            self.items.filter(keep),
            self.times[mask],
            self.labels[mask],
            self.rows[mask],
        )


@dataclass(frozen=True)
class EntityTable:
    """A users or items table: its keys [m] and its feature columns, by feature name."""

    spec: TableSpec
    keys: pa.ChunkedArray
    columns: dict[str, pa.ChunkedArray]


def load_spec_data(spec: DatasetSpec) -> InteractionData:
    """The dataset a spec describes; a ValueError naming file, column and row when it is wrong."""
    events, details = read_events(spec)
    items = read_entity_table(spec.items, events.items, "interactions' item")
    users = read_entity_table(spec.users, events.users, "interactions' user")
    if items is None:
        item_vocab, item_ids = indexed_ids(ITEM_ID, events.items)
    else:
        item_vocab = id_encoder(ITEM_ID, items.keys)
        known = item_vocab.index_of(events.items)
        events, item_ids = keep_known_items(spec, events, known, items, details)
    user_vocab, user_ids = indexed_ids(
        USER_ID, events.users, *([] if users is None else [users.keys])
    )
    splits = split_samples(events.times, spec.split, spec.interactions.path)
    times, labels = events.times, events.labels
    if spec.negatives is not None:
        user_ids, item_ids, times, labels, splits = add_negatives(
            user_ids, item_ids, times, splits, spec.negatives, item_vocab.vocab_size - 1
        )
        details["negatives_per_positive"] = spec.negatives.per_positive
    num_users, num_items = user_vocab.vocab_size - 1, item_vocab.vocab_size - 1
    positive = labels == 1
    histories, latest = histories_before(
        user_ids[positive], times[positive], item_ids[positive],
        user_ids, times, num_users, spec.history.length,
    )  # fmt: skip
    training = splits["train"]
    user_fields, user_table, user_encoders = feature_table(
        "user", users, user_vocab, seen_in(user_ids[training], user_vocab.vocab_size), details
    )
    item_fields, item_table, item_encoders = feature_table(
        "item", items, item_vocab, seen_in(item_ids[training], item_vocab.vocab_size), details
    )
    schema = FeatureSchema(fields=(*user_fields, *item_fields), max_history=spec.history.length)
    profiles = None if users is None else raw_profiles(users, user_vocab)
    details |= {"samples": int(user_ids.size), "users": num_users, "items": num_items}
    log.info("dataset %s from its spec: %s", spec.name, details)
    return InteractionData(
        name=spec.name,
        schema=schema,
        user_features=user_table,
        item_features=item_table,
        catalogue=np.arange(1, num_items + 1, dtype=np.int64),
        user_ids=user_ids,
        item_ids=item_ids,
        labels=labels,
        timestamps=times,
        histories=histories,
        latest_histories=latest,
        splits=splits,
        details=details,
        vocabulary=Vocabulary(user_vocab, item_vocab, user_encoders | item_encoders),
        raw_profiles=profiles,
    )


def read_events(spec: DatasetSpec) -> tuple[Events, dict[str, object]]:
    """The interactions with their labels; rows a rating says to drop are left out (counted)."""
    source = spec.interactions
    path = source.path
    label_column = source.label or (source.rating.column if source.rating else None)
    names = [source.user, source.item, source.timestamp, *([label_column] if label_column else [])]
    table = read_table(path, names, strings=(source.user, source.item))
    users = id_column(path, source.user, table.column(source.user))
    items = id_column(path, source.item, table.column(source.item))
    times = timestamps(path, source.timestamp, table.column(source.timestamp))
    rows = np.arange(1, table.num_rows + 1, dtype=np.int64)
    details: dict[str, object] = {"interactions": table.num_rows}
    if source.label is not None:
        labels = binary_labels(path, source.label, table.column(source.label))
        return Events(users, items, times, labels, rows), details
    if source.rating is None:  # a log of positives: negatives are drawn later
        return Events(users, items, times, np.ones(rows.size, np.float32), rows), details
    stars = as_float_array(table.column(source.rating.column))
    if np.isnan(stars).any():
        row = int(np.flatnonzero(np.isnan(stars))[0]) + 1
        raise ValueError(f"{path}, column {source.rating.column!r}, row {row}: no rating")
    labels = (stars >= source.rating.positive_at_least).astype(np.float32)
    dropped = np.isin(stars, source.rating.drop)
    details["dropped_ratings"] = int(dropped.sum())
    return Events(users, items, times, labels, rows).take(~dropped), details


def read_entity_table(
    spec: TableSpec | None, ids: pa.ChunkedArray, ids_where: str
) -> EntityTable | None:
    if spec is None:
        return None
    columns = [f.source_column for f in spec.features]
    table = read_table(spec.path, [spec.key, *columns], strings=(spec.key,))
    keys = id_column(spec.path, spec.key, table.column(spec.key))
    same_id_types(ids, f"the {ids_where} column", keys, f"{spec.path}, column {spec.key!r}")
    unique_keys(spec.path, spec.key, keys)
    return EntityTable(spec, keys, {f.name: table.column(f.source_column) for f in spec.features})


def keep_known_items(
    spec: DatasetSpec,
    events: Events,
    item_ids: np.ndarray,
    items: EntityTable,
    details: dict[str, object],
) -> tuple[Events, np.ndarray]:
    """Interactions whose item is in the items table, and their `item_ids` (each event's index
    in the table's vocabulary [n], 0 where unknown); the others are dropped while their share
    stays within `max_unknown_share`, else refused with the first one's row."""
    known = item_ids > 0
    unknown = int((~known).sum())
    if unknown == 0:
        return events, item_ids
    share = unknown / known.size
    first = int(np.flatnonzero(~known)[0])
    if share > spec.max_unknown_share:
        raise ValueError(
            f"{spec.interactions.path}, column {spec.interactions.item!r}: {unknown} of "
            f"{known.size} interactions ({share:.1%}) name an item not in {items.spec.path} "
            f"(first: row {events.rows[first]}, {events.items[first].as_py()!r}); allowed: "
            f"max_unknown_share = {spec.max_unknown_share}"
        )
    log.warning("dropping %d interactions whose item is not in %s", unknown, items.spec.path)
    details["dropped_unknown_items"] = unknown
    return events.take(known), item_ids[known]


def split_samples(times: np.ndarray, split: SplitSpec, path: Path) -> dict[str, np.ndarray]:
    """Sample indices per split: the latest samples are the test, those before the validation
    (temporal), or a seeded permutation's first samples the test, the next the validation
    (random: the built-in loaders' order, so a shipped spec draws their split from their seed)."""
    n = times.size
    n_test, n_validation = round(n * split.test), round(n * split.validation)
    n_train = n - n_test - n_validation
    if split.kind == "temporal":
        order = np.argsort(times, kind="stable")  # ties in file order
        parts = {
            "train": order[:n_train],
            "validation": order[n_train : n_train + n_validation],
            "test": order[n_train + n_validation :],
        }
    else:
        order = np.random.default_rng(split.seed).permutation(n)
        parts = {
            "test": order[:n_test],
            "validation": order[n_test : n_test + n_validation],
            "train": order[n_test + n_validation :],
        }
    for name in SPLITS:
        if parts[name].size == 0:
            raise ValueError(
                f"{path}: the {name} split is empty ({n} samples, split {split.kind} with "
                f"validation {split.validation} and test {split.test})"
            )
    # Each sample's split, then each split's indices in order: no sort of millions of indices.
    split_of = np.empty(n, dtype=np.int8)
    for code, name in enumerate(SPLITS):
        split_of[parts[name]] = code
    return {name: np.flatnonzero(split_of == code) for code, name in enumerate(SPLITS)}


def add_negatives(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    times: np.ndarray,
    splits: dict[str, np.ndarray],
    spec: NegativesSpec,
    num_items: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """`per_positive` negatives per positive: its user and time, an item drawn uniformly or by
    training popularity, never the positive's own; each in its positive's split. Sample j of
    positive i is row n + i * per_positive + j."""
    if num_items < 2:
        raise ValueError("negatives need at least two items to draw from")
    rng = np.random.default_rng(spec.seed)
    n, k = user_ids.size, spec.per_positive
    weights = None
    if spec.sampler == "popularity":
        counts = np.bincount(item_ids[splits["train"]], minlength=num_items + 1)[1:]
        weights = counts / counts.sum()

    def draw(size: int) -> np.ndarray:
        return rng.choice(num_items, size=size, p=weights) + 1

    negatives = draw(n * k).reshape(n, k)
    for _ in range(MAX_RESAMPLE_ROUNDS):
        hits = negatives == item_ids[:, None]
        if not hits.any():
            break
        negatives[hits] = draw(int(hits.sum()))
    offsets = n + np.arange(n)[:, None] * k + np.arange(k)
    splits = {
        name: np.sort(np.concatenate([idx, offsets[idx].ravel()])) for name, idx in splits.items()
    }
    return (
        np.concatenate([user_ids, np.repeat(user_ids, k)]),
        np.concatenate([item_ids, negatives.ravel()]),
        np.concatenate([times, np.repeat(times, k)]),
        np.concatenate([np.ones(n, np.float32), np.zeros(n * k, np.float32)]),
        splits,
    )


def seen_in(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """[vocab_size] bool: which of the indices 0..vocab_size-1 occur in `ids` (a mask, not a
    sorted unique: no sort of millions of samples)."""
    seen = np.zeros(vocab_size, dtype=bool)
    seen[ids] = True
    return seen


def feature_table(
    source: Source,
    table: EntityTable | None,
    ids: FieldEncoder,
    trained_ids: np.ndarray,
    details: dict[str, object],
) -> tuple[list[FieldSpec], np.ndarray, dict[str, FieldEncoder]]:
    """The fields of one tower, its feature table [V+1, slots] (row = internal id, column 0 the
    id itself) and the encoders of its features; `trained_ids` [V+1] marks the ids of the
    training split (`seen_in`), whose rows the numeric buckets are learned from."""
    rows = ids.vocab_size
    fields = [FieldSpec(name=ids.name, source=source, vocab_size=rows)]
    columns = [np.arange(rows, dtype=np.int64)[:, None]]
    encoders: dict[str, FieldEncoder] = {}
    if table is not None:
        at = ids.index_of(table.keys)  # each table row's internal id
        trained = trained_ids[at]
        for feature in table.spec.features:
            encoder = fit_encoder(feature, table.columns[feature.name], trained, table.spec.path)
            raw = table.columns[feature.name]
            if encoder.kind == "multi_categorical":
                encoded, details[f"truncated_{feature.name}"] = encoder.encode_lists(raw)
            else:
                encoded = encoder.encode(raw)
            column = np.zeros((rows, encoder.slots), dtype=np.int64)
            column[at] = encoded.reshape(at.size, encoder.slots)
            fields.append(
                FieldSpec(
                    name=feature.name,
                    source=source,
                    vocab_size=encoder.vocab_size,
                    slots=encoder.slots,
                )
            )
            columns.append(column)
            encoders[feature.name] = encoder
    return fields, np.concatenate(columns, axis=1), encoders


def raw_profiles(table: EntityTable, ids: FieldEncoder) -> pa.Table:
    """The users table's raw feature values, row u = internal user u ([V+1] rows, null where the
    table has no row for the user; a multi-categorical value as its list): what the feature
    store's records hold."""
    at = ids.index_of(table.keys)
    position = np.full(ids.vocab_size, -1, dtype=np.int64)
    position[at] = np.arange(at.size)
    rows = pa.array(position, mask=position < 0)
    columns = {}
    for feature in table.spec.features:
        column = table.columns[feature.name]
        if feature.type == "multi_categorical":
            column = as_lists(column, feature.separator)
        columns[feature.name] = column.take(rows)
    return pa.table(columns)


def fit_encoder(
    feature: FeatureColumn, column: pa.ChunkedArray, trained: np.ndarray, path: Path
) -> FieldEncoder:
    """The encoder of one feature: categorical values over the whole table (seen at least
    `min_count` times); numeric quantiles over the rows of entities in the training split."""
    try:
        if feature.type == "numeric":
            return numeric_encoder(feature.name, as_floats(column)[trained], feature.bucket_count)
        if feature.type == "multi_categorical":
            assert feature.max_values is not None
            encoder = multi_categorical_encoder(
                feature.name, column, feature.min_count, feature.separator, feature.max_values
            )
        else:
            encoder = categorical_encoder(feature.name, column, feature.min_count)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise ValueError(f"{path}, column {feature.source_column!r}: {exc}") from exc
    if encoder.vocab_size < 2:
        raise ValueError(
            f"{path}, column {feature.source_column!r}: no value seen {feature.min_count} or "
            "more times"
        )
    return encoder
