"""A loaded model version: verified manifest, ONNX Runtime sessions and the item table.

Both kinds of model run the same two graphs: a decoupled model's scorer is its light interaction
(LSS, dot product, ...), a pairwise model's (COLD) is its whole network run per candidate, over
embeddings the user graph and the item table only look up.

Loaded from Redis (the active version) or a local bundle directory; checksums are verified
before any byte is used, and each ONNX session against the manifest (`service.sessions`). A
request reads one snapshot reference and nothing else, so replacing that reference can never mix
two versions in one response.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort

from prerank_contract.blocks import DEFAULT_BLOCK_ROWS, candidate_blocks
from prerank_contract.bundle import BundleError, verify_bundle_dir, verify_files
from prerank_contract.features import PADDING_INDEX
from prerank_contract.graphs import (
    DTYPES,
    GRAPHS,
    HISTORY,
    ITEM_HEADS,
    META_INDEX,
    SCORER,
    USER_FEATURES,
    USER_HEADS,
    USER_TOWER,
)
from prerank_contract.manifest import (
    ITEM_FEATURES_FILE,
    ITEM_HEADS_FILE,
    ITEM_IDS_FILE,
    META_INDEX_FILE,
    PER_CANDIDATE_SCORER_FORMAT,
    Manifest,
)
from service.sessions import open_sessions
from service.settings import ServiceSettings
from service.vocabulary import ServingVocabulary, serving_vocabulary

ARRAY_FILES = (ITEM_IDS_FILE, ITEM_HEADS_FILE, META_INDEX_FILE, ITEM_FEATURES_FILE)
FALLBACK_CHUNK_ITEMS = 8_192  # items per scorer run when the fallback order is precomputed


@dataclass(frozen=True)
class ScorerItems:
    """N candidates as the scorer takes them: its item inputs `feeds` (item_heads and
    meta_index, in blocks for a bundle of format 2), each candidate's meta index in request
    order [N], and the slot of each candidate's logit in the scorer's flattened logits [N]."""

    feeds: dict[str, np.ndarray]
    meta_index: np.ndarray
    slots: np.ndarray


def _array(files: Mapping[str, bytes], name: str, source: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(files[name]), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{source}/{name}: not a readable array: {exc}") from exc


def _check_item_table(manifest: Manifest, arrays: Mapping[str, np.ndarray], source: str) -> None:
    """Row counts, widths and index ranges of the item table must match the manifest."""
    item_ids, meta_index = arrays[ITEM_IDS_FILE], arrays[META_INDEX_FILE]
    n = manifest.item_count
    meta_in_range = meta_index.size == 0 or (
        meta_index.min() >= 0 and meta_index.max() < manifest.num_meta_queries
    )
    problems = {
        ITEM_IDS_FILE: item_ids.shape != (n,)
        or bool(item_ids.size and np.any(np.diff(item_ids) <= 0)),
        ITEM_HEADS_FILE: arrays[ITEM_HEADS_FILE].ndim != 3 or arrays[ITEM_HEADS_FILE].shape[0] != n,
        META_INDEX_FILE: meta_index.shape != (n,) or not meta_in_range,
        ITEM_FEATURES_FILE: arrays[ITEM_FEATURES_FILE].shape
        != (n, manifest.feature_schema.item_slots),
    }
    bad = [name for name, wrong in problems.items() if wrong]
    if bad:
        raise BundleError(
            f"{source}: {bad} disagree with the manifest (item_count {n}, "
            f"K {manifest.num_meta_queries}, sorted unique ids)"
        )


def direct_index(item_ids: np.ndarray, max_ratio: float) -> np.ndarray | None:
    """item_ids [N] sorted, non-negative -> [max id + 1] int32 row of each id (-1: none), when
    max id + 1 <= max_ratio * N (the index then costs at most 4 * max_ratio bytes per item);
    None for sparse ids (hashed or 64-bit), which binary search serves instead."""
    if not item_ids.size or item_ids[0] < 0 or item_ids[-1] + 1 > max_ratio * item_ids.size:
        return None
    if item_ids.size > np.iinfo(np.int32).max:
        return None
    index = np.full(int(item_ids[-1]) + 1, -1, dtype=np.int32)
    index[item_ids] = np.arange(item_ids.size, dtype=np.int32)
    return index


def search_sorted(item_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ids [n] looked up by binary search in item_ids [N] sorted -> (rows [n] int64, known [n]
    bool); an unknown id gets some valid row (0 when N is 0). Its cost grows with log N and with
    the cache misses of a large table."""
    if not item_ids.size:
        return np.zeros(ids.size, np.int64), np.zeros(ids.size, bool)
    rows = np.minimum(np.searchsorted(item_ids, ids), item_ids.size - 1)
    return rows, item_ids[rows] == ids


@dataclass(frozen=True)
class Snapshot:
    """One servable version.

    item_ids [N] int64 sorted; item_heads [N, H_v, d] float32; meta_index [N] int64;
    item_features [N, S_i] int64 (to describe a user's history items); row_of_id
    [max id + 1] int32 (-1: no such item) when the ids are dense enough for a direct index,
    else None (binary search over item_ids). The item ids are the version's indices: the
    `vocabulary` maps the caller's raw ids to them.
    """

    manifest: Manifest
    source: str
    user_tower: ort.InferenceSession
    scorer: ort.InferenceSession
    item_ids: np.ndarray
    item_heads: np.ndarray
    meta_index: np.ndarray
    item_features: np.ndarray
    vocabulary: ServingVocabulary
    row_of_id: np.ndarray | None = None
    block_rows: int = DEFAULT_BLOCK_ROWS

    @property
    def version(self) -> str:
        return self.manifest.version

    @classmethod
    def from_files(
        cls,
        manifest: Manifest,
        files: Mapping[str, bytes],
        source: str,
        settings: ServiceSettings,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> Snapshot:
        """Build a snapshot from verified files (the item table from `arrays` when given, e.g.
        memory-mapped); refuse (BundleError, naming the file) any bundle whose contents disagree
        with its manifest."""
        missing_graphs = sorted(set(GRAPHS) - set(manifest.graphs))
        if missing_graphs:
            raise BundleError(f"{source}: manifest lacks graphs {missing_graphs}")
        graph_files = tuple(manifest.graphs[graph].file for graph in GRAPHS)
        missing_files = sorted(set(ARRAY_FILES + graph_files) - set(manifest.files))
        if missing_files:
            raise BundleError(f"{source}: manifest lacks files {missing_files}")
        if arrays is None:
            arrays = {name: _array(files, name, source) for name in ARRAY_FILES}
        _check_item_table(manifest, arrays, source)
        sessions = open_sessions(manifest, files, source, settings)
        item_ids = arrays[ITEM_IDS_FILE].astype(np.int64, copy=False)
        try:
            vocabulary = serving_vocabulary(manifest, files)
        except (KeyError, OSError, ValueError) as exc:
            raise BundleError(f"{source}: its vocabulary cannot be read: {exc}") from exc
        return cls(  # no copies of arrays already in the right dtype: a mapping stays shared
            manifest=manifest,
            source=source,
            user_tower=sessions[USER_TOWER],
            scorer=sessions[SCORER],
            row_of_id=direct_index(item_ids, settings.direct_index_max_ratio),
            item_ids=item_ids,
            item_heads=np.ascontiguousarray(arrays[ITEM_HEADS_FILE], dtype=DTYPES[ITEM_HEADS]),
            meta_index=arrays[META_INDEX_FILE].astype(DTYPES[META_INDEX], copy=False),
            item_features=arrays[ITEM_FEATURES_FILE].astype(DTYPES[HISTORY], copy=False),
            vocabulary=vocabulary,
            block_rows=settings.scorer_block_rows,
        )

    @classmethod
    def from_dir(
        cls,
        bundle_dir: Path,
        settings: ServiceSettings,
        mmap: bool = False,
        source: str | None = None,
    ) -> Snapshot:
        """A bundle directory, every file's sha256 checked on disk, and again on the bytes
        read. With `mmap`, the item table is instead memory-mapped read-only from the (immutable,
        just checked) files, never read into memory, so processes serving the same directory
        share its pages. `source` names where the bundle came from (default: the directory)."""
        manifest = verify_bundle_dir(bundle_dir)
        mapped = set(ARRAY_FILES) if mmap else set()
        files = {
            name: (bundle_dir / name).read_bytes() for name in manifest.files if name not in mapped
        }
        read = {name: entry for name, entry in manifest.files.items() if name in files}
        verify_files(  # the bytes we load, not just the disk
            manifest.model_copy(update={"files": read}), files, str(bundle_dir)
        )
        source = source or str(bundle_dir.resolve())
        arrays = None
        if mmap:
            try:
                arrays = {
                    name: np.load(bundle_dir / name, mmap_mode="r", allow_pickle=False)
                    for name in ARRAY_FILES
                }
            except (OSError, ValueError) as exc:
                raise BundleError(f"{source}: cannot map the item table: {exc}") from exc
        return cls.from_files(manifest, files, source, settings, arrays)

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ids [n] int64 -> (rows [n] int64, known [n] bool); an unknown id gets some valid row.

        One read per id of the direct index where there is one, else a binary search over the
        sorted ids (`search_sorted`)."""
        if self.row_of_id is None:
            return search_sorted(self.item_ids, ids)
        in_range = (ids >= 0) & (ids < self.row_of_id.size)
        found = self.row_of_id[np.where(in_range, ids, 0)]
        known = in_range & (found >= 0)
        return np.maximum(found, 0).astype(np.int64), known

    def history_features(self, history_ids: np.ndarray) -> np.ndarray:
        """Item indices (most recent last) -> [1, L, S_i], unknown ones dropped, left-padded."""
        length = self.manifest.feature_schema.max_history
        rows, known = self.lookup(history_ids)
        rows = rows[known][-length:]
        out = np.full((1, length, self.item_features.shape[1]), PADDING_INDEX, DTYPES[HISTORY])
        if rows.size:
            out[0, length - rows.size :] = self.item_features[rows]
        return out

    def encode_user(self, user_features: np.ndarray, history: np.ndarray) -> np.ndarray:
        """[1, S_u], [1, L, S_i] -> user_heads [K, H_u, d] (one run of the K-way user tower)."""
        (heads,) = self.user_tower.run(None, {USER_FEATURES: user_features, HISTORY: history})
        return heads[0]

    def gather(self, rows: np.ndarray) -> ScorerItems:
        """rows [N] -> the candidates' item heads and meta indices as the scorer takes them:
        grouped by meta index in blocks of `block_rows` (`prerank_contract.blocks`), gathered
        from the item table straight into that order; one per row for a bundle of format 1."""
        meta_index = self.meta_index[rows]
        if self.manifest.format_version == PER_CANDIDATE_SCORER_FORMAT:
            feeds = {ITEM_HEADS: self.item_heads[rows], META_INDEX: meta_index}
            return ScorerItems(feeds, meta_index, np.arange(rows.size))
        layout = candidate_blocks(meta_index, self.block_rows, self.manifest.num_meta_queries)
        feeds = layout.scorer_items(self.item_heads[rows[layout.rows]])
        return ScorerItems(feeds, meta_index, layout.slots)

    def score(self, user_heads: np.ndarray, items: ScorerItems) -> np.ndarray:
        """One batched scorer run: logits [N], in the order of the rows `gather` was given."""
        (logits,) = self.scorer.run(None, {USER_HEADS: user_heads, **items.feeds})
        return logits.reshape(-1)[items.slots]

    def cold_start_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """The user tower's inputs for a user nothing is known about: ([1, S_u], [1, L, S_i]),
        all padding."""
        user_slots = self.manifest.feature_schema.user_slots
        user_row = np.full((1, user_slots), PADDING_INDEX, DTYPES[USER_FEATURES])
        return user_row, self.history_features(np.zeros(0, np.int64))

    @cached_property
    def fallback_logits(self) -> np.ndarray:
        """[N] float32: every catalogue item scored for a cold-start user, the order a request
        gets when its deadline passes before scoring (a gather, no model run). Computed once,
        at warm-up, in chunks of FALLBACK_CHUNK_ITEMS."""
        user_heads = self.encode_user(*self.cold_start_inputs())
        chunks = [
            self.score(user_heads, self.gather(np.arange(start, stop)))
            for start, stop in _chunks(self.item_ids.size, FALLBACK_CHUNK_ITEMS)
        ]
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)

    @cached_property
    def clusters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The catalogue grouped by meta index: (sizes [K], starts [K], rows [N]) where
        rows[starts[k] : starts[k] + sizes[k]] are the rows of cluster k in id order."""
        sizes = np.bincount(self.meta_index, minlength=self.manifest.num_meta_queries)
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        return sizes, starts, np.argsort(self.meta_index, kind="stable")


def _chunks(size: int, chunk: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk, size)) for start in range(0, size, chunk)]
