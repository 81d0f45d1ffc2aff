"""Which feature stores the served versions read, and how each spells ids and profile values.

The consumer writes the store of the active version and, while an A/B split is set, the
treatment version's when it differs; the pointers are re-read every poll and the stores resolved
again when they change. A version's manifest says everything needed: its store
(`Manifest.feature_store`), its history length (the schema's `max_history`) and the types of its
vocabularies (a version without one takes indices: integers).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from offline_jobs.events.entries import FieldFormat, IdKind, StoreFormat
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import Manifest
from prerank_contract.redis_store import parse_split, read_manifest_of, read_pointers
from prerank_contract.vocabulary import BundleVocabulary

log = logging.getLogger(__name__)

Pointers = tuple[str | None, bytes | str | None]  # (active version, the stored A/B split, raw)


def _id_kind(vocabulary: BundleVocabulary, field: str) -> IdKind:
    return "string" if vocabulary.of(field).value_type == "string" else "integer"


def store_format(manifest: Manifest) -> StoreFormat:
    """How `manifest`'s version reads its feature store's records."""
    schema = manifest.feature_schema
    vocabulary = manifest.vocabulary
    if vocabulary is None:  # a built-in dataset's version: ids and values are indices
        fields = {f.name: FieldFormat("integer", multi=f.slots > 1) for f in schema.user_fields}
        return StoreFormat(manifest.feature_store, "integer", "integer", schema.max_history, fields)
    described = {entry.field: entry for entry in vocabulary.fields}
    fields = {}
    for spec in schema.user_fields:
        entry = described.get(spec.name)
        if entry is None or spec.name == vocabulary.user_id_field:
            continue
        value_type = "float" if entry.kind == "numeric" else entry.value_type or "string"
        multi = entry.kind == "multi_categorical"
        fields[spec.name] = FieldFormat(value_type, multi, entry.separator)
    return StoreFormat(
        manifest.feature_store,
        _id_kind(vocabulary, vocabulary.user_id_field),
        _id_kind(vocabulary, vocabulary.item_id_field),
        schema.max_history,
        fields,
    )


def merge_formats(formats: Sequence[StoreFormat]) -> list[StoreFormat]:
    """One format per store: the first version's, with the longest history any of the versions
    reading it keeps (each version reads the most recent `max_history` of it)."""
    merged: dict[str, StoreFormat] = {}
    for fmt in formats:
        known = merged.get(fmt.store)
        if known is None:
            merged[fmt.store] = fmt
        elif fmt.max_history > known.max_history:
            merged[fmt.store] = replace(known, max_history=fmt.max_history)
    return list(merged.values())


def read_served_pointers(client: Any, keys: RedisKeys) -> Pointers:
    """The active pointer and the stored split, in one round trip."""
    pointers = read_pointers(client, keys, ())
    return pointers.active, pointers.raw_split


def served_stores(client: Any, keys: RedisKeys, pointers: Pointers) -> list[StoreFormat]:
    """The stores the versions `pointers` name read (empty: nothing is active). A treatment
    version whose manifest cannot be read is left out, with a warning: the active one's store
    is still written."""
    active, raw_split = pointers
    if active is None:
        return []
    manifest = read_manifest_of(client, keys, active)
    if manifest is None:
        raise LookupError(f"the active version {active} has no manifest in Redis")
    formats = [store_format(manifest)]
    try:
        split = parse_split(raw_split, keys.split)
    except ValueError as exc:
        log.warning("%s; writing the active version's store only", exc)
        split = None
    if split is not None and split.version != active:
        treatment = read_manifest_of(client, keys, split.version)
        if treatment is None:
            log.warning("treatment version %s has no manifest; its store is not written", split)
        else:
            formats.append(store_format(treatment))
    return merge_formats(formats)
