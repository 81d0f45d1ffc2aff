"""Precompute every catalogue item's scorer-side heads and hard meta index, offline: batch by batch
into the bundle's memory-mapped .npy files, optionally sharded over the ranks of a torchrun job.

Memory stays bounded by the batch size: the four item arrays are allocated at their final size on
disk (`np.lib.format.open_memmap`, the same bytes `np.save` writes) and each batch is written into
its rows; what is kept besides the maps is per meta vector, not per item. Under torchrun rank r
fills a contiguous slice of rows of rank 0's files, which every rank reaches at the same path
(a shared filesystem; see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch
from tqdm import tqdm

from offline_jobs.distributed import DistributedWorld, gather_outcomes
from prerank_contract.manifest import (
    ITEM_FEATURES_FILE,
    ITEM_HEADS_FILE,
    ITEM_IDS_FILE,
    META_INDEX_FILE,
)
from prerank_model.models.base import MetaAssignment, PrerankModel

log = logging.getLogger(__name__)

# A FAISS assignment may differ from torch's argmax only where two meta vectors tie this closely.
TIE_MARGIN = 1e-5

ITEM_ID_DTYPE = np.int64
ITEM_HEAD_DTYPE = np.float32
META_INDEX_DTYPE = np.int32
ITEM_TABLE_FILES = (ITEM_IDS_FILE, ITEM_FEATURES_FILE, ITEM_HEADS_FILE, META_INDEX_FILE)
"""The bundle files precompute writes, one row per catalogue item."""


@dataclass(frozen=True)
class ItemTable:
    """Catalogue rows, sorted by item id, memory-mapped over the bundle's files (copy-on-write:
    writable for torch, never written back).

    item_ids [N] int64, item_features [N, S_i] int64, item_heads [N, H_v, d] float32,
    meta_index [N] int32; meta_counts [K] int64 (items per meta vector); meta_matrix [K, D_c]
    float32, faiss_index and soft_hard_cosine (mean over the catalogue) for a model with a meta
    matrix (FIT) only.
    """

    item_ids: np.ndarray
    item_features: np.ndarray
    item_heads: np.ndarray
    meta_index: np.ndarray
    meta_counts: np.ndarray
    meta_matrix: np.ndarray | None
    faiss_index: faiss.Index | None
    soft_hard_cosine: float | None


@dataclass(frozen=True)
class SliceSummary:
    """What one slice of rows adds to the catalogue's diagnostics: its row count, items per meta
    vector meta_counts [K] int64, the sum of the soft/hard query cosine over its items (a model
    with a meta matrix), and how many items tied between meta vectors."""

    rows: int
    meta_counts: np.ndarray
    cosine_sum: float
    ties: int

    @staticmethod
    def combine(parts: Sequence[SliceSummary]) -> SliceSummary:
        return SliceSummary(
            rows=sum(part.rows for part in parts),
            meta_counts=np.sum([part.meta_counts for part in parts], axis=0),
            cosine_sum=sum(part.cosine_sum for part in parts),
            ties=sum(part.ties for part in parts),
        )


class MetaIndexMismatchError(ValueError):
    """FAISS and the model disagree on an item's meta vector where no tie explains it."""


def slice_rows(count: int, batch_size: int, rank: int, world_size: int) -> range:
    """Rank `rank`'s contiguous rows of a catalogue of `count` rows, cut at batch boundaries.

    The ceil(count / batch_size) batches are split as evenly as whole batches allow, so every
    rank runs exactly the batches a single process runs (the same rows per `encode_items` call,
    hence the same floats) and the ranks' slices together cover every row once.
    """
    batches = -(-count // batch_size)
    first = batches * rank // world_size
    last = batches * (rank + 1) // world_size
    return range(min(first * batch_size, count), min(last * batch_size, count))


def meta_faiss_index(model: PrerankModel) -> tuple[np.ndarray, faiss.Index] | None:
    """The model's meta matrix Q [K, D_c] float32 and a FAISS inner-product index over its rows;
    None for a model without meta vectors."""
    meta_matrix = model.meta_matrix()
    if meta_matrix is None:
        return None
    rows = meta_matrix.numpy().astype(np.float32)
    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(rows)
    return rows, index


@torch.no_grad()
def allocate_item_table(
    directory: Path,
    model: PrerankModel,
    item_ids: np.ndarray,
    item_feature_table: np.ndarray,
    chunk_rows: int,
) -> int:
    """Create the item table's files in `directory` (created if missing) at their final size;
    return N.

    item_ids [N] (any order) is copied into item_ids.npy `chunk_rows` at a time and sorted there,
    in place; item_features [N, S_i], item_heads [N, H_v, d] (the width from one `encode_items`
    call) and meta_index [N] are left for `precompute_slice` to fill.
    """
    count = int(item_ids.shape[0])
    if count == 0:
        raise ValueError("precompute: the catalogue is empty")
    directory.mkdir(parents=True, exist_ok=True)
    ids = np.lib.format.open_memmap(
        directory / ITEM_IDS_FILE, mode="w+", dtype=ITEM_ID_DTYPE, shape=(count,)
    )
    for start in range(0, count, chunk_rows):
        ids[start : start + chunk_rows] = item_ids[start : start + chunk_rows]
    ids.sort()  # in place, in the map
    probe = item_feature_table[ids[:1]]  # [1, S_i]
    heads, _ = model.encode_items(torch.from_numpy(probe))
    shapes: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
        ITEM_FEATURES_FILE: (item_feature_table.dtype, (count, item_feature_table.shape[1])),
        ITEM_HEADS_FILE: (np.dtype(ITEM_HEAD_DTYPE), (count, *heads.shape[1:])),
        META_INDEX_FILE: (np.dtype(META_INDEX_DTYPE), (count,)),
    }
    for name, (dtype, shape) in shapes.items():
        np.lib.format.open_memmap(directory / name, mode="w+", dtype=dtype, shape=shape).flush()
    ids.flush()
    return count


@torch.no_grad()
def precompute_slice(
    model: PrerankModel,
    item_feature_table: np.ndarray,
    directory: Path,
    rows: range,
    batch_size: int,
    *,
    progress: bool = True,
    label: str = "",
) -> SliceSummary:
    """Fill `rows` of the item table allocated in `directory`, `batch_size` rows at a time.

    Per batch: the items' feature rows (gathered from item_feature_table [V, S_i] by the sorted
    ids), `encode_items` -> item heads [b, H_v, d] and meta index [b]; for a model with a meta
    matrix, the meta index assigned by FAISS over it and checked against the model's argmax (a
    tie keeps the argmax) and the soft/hard query cosine summed. Nothing per item is kept in
    memory.
    """
    model.eval()
    started = time.perf_counter()
    ids = np.load(directory / ITEM_IDS_FILE, mmap_mode="r")
    features = np.load(directory / ITEM_FEATURES_FILE, mmap_mode="r+")
    heads = np.load(directory / ITEM_HEADS_FILE, mmap_mode="r+")
    meta_index = np.load(directory / META_INDEX_FILE, mmap_mode="r+")
    faiss_meta = meta_faiss_index(model)
    meta_counts = np.zeros(model.num_meta_queries, dtype=np.int64)
    cosine_sum, ties = 0.0, 0
    with tqdm(
        total=len(rows),
        desc=f"precompute {model.name}{label}",
        disable=not progress,
        unit="item",
        unit_scale=True,
    ) as bar:
        for start in range(rows.start, rows.stop, batch_size):
            stop = min(start + batch_size, rows.stop)
            batch = item_feature_table[ids[start:stop]]  # [b, S_i]
            features[start:stop] = batch
            batch_features = torch.from_numpy(batch)
            batch_heads, model_index = model.encode_items(batch_features)
            batch_index = model_index.numpy().astype(META_INDEX_DTYPE)
            if faiss_meta is not None:
                assignment = _meta_assignment(model, batch_features)
                batch_index, batch_ties = _faiss_meta_index(faiss_meta[1], assignment, batch_index)
                ties += batch_ties
                cosine_sum += float(assignment.soft_hard_cosines.double().sum())
            heads[start:stop] = batch_heads.numpy()
            meta_index[start:stop] = batch_index
            batch_counts = np.bincount(batch_index, minlength=meta_counts.size)
            if batch_counts.size != meta_counts.size:
                raise ValueError(f"{model.name}: a meta index >= K = {meta_counts.size}")
            meta_counts += batch_counts
            bar.update(stop - start)
    for array in (features, heads, meta_index):
        array.flush()
    log.info(
        "precomputed rows %d-%d of %d%s in %.1f s",
        rows.start,
        rows.stop,
        ids.shape[0],
        label,
        time.perf_counter() - started,
    )
    return SliceSummary(len(rows), meta_counts, cosine_sum, ties)


def open_item_table(directory: Path, model: PrerankModel, summary: SliceSummary) -> ItemTable:
    """The filled item table in `directory`, mapped copy-on-write, with the combined summary of
    its slices."""
    arrays = {name: np.load(directory / name, mmap_mode="c") for name in ITEM_TABLE_FILES}
    if summary.rows != arrays[ITEM_IDS_FILE].shape[0]:
        raise ValueError(
            f"precompute: slices cover {summary.rows} of {arrays[ITEM_IDS_FILE].shape[0]} rows"
        )
    faiss_meta = meta_faiss_index(model)
    return ItemTable(
        item_ids=arrays[ITEM_IDS_FILE],
        item_features=arrays[ITEM_FEATURES_FILE],
        item_heads=arrays[ITEM_HEADS_FILE],
        meta_index=arrays[META_INDEX_FILE],
        meta_counts=summary.meta_counts,
        meta_matrix=None if faiss_meta is None else faiss_meta[0],
        faiss_index=None if faiss_meta is None else faiss_meta[1],
        soft_hard_cosine=None if faiss_meta is None else summary.cosine_sum / summary.rows,
    )


def precompute_items(
    model: PrerankModel,
    item_ids: np.ndarray,
    item_feature_table: np.ndarray,
    batch_size: int,
    directory: Path,
    *,
    progress: bool = True,
    world: DistributedWorld | None = None,
) -> ItemTable:
    """Write the item table of `item_ids` [N] into `directory` and map it back.

    Alone (`world` None): allocate, then fill every row. Rank 0 of a torchrun job: allocate,
    tell every rank the directory, fill its own slice, and wait until every rank has filled its
    slice (`precompute_share` on the others); a failure on any rank fails every rank.
    """
    model.eval()
    if world is None or world.world_size == 1:
        count = allocate_item_table(directory, model, item_ids, item_feature_table, batch_size)
        rows = slice_rows(count, batch_size, 0, 1)
        summary = precompute_slice(
            model, item_feature_table, directory, rows, batch_size, progress=progress
        )
    else:

        def allocate() -> str:
            allocate_item_table(directory, model, item_ids, item_feature_table, batch_size)
            return str(directory)

        gather_outcomes(allocate, f"allocating the item table of {model.name}")
        parts = _fill_own_slice(model, item_feature_table, directory, batch_size, world, progress)
        summary = SliceSummary.combine(parts)
    if summary.ties:
        log.warning("%d items tie between meta vectors; the model's argmax kept", summary.ties)
    log.info(
        "precomputed %d items of %s over %d rank(s)",
        summary.rows,
        model.name,
        1 if world is None else world.world_size,
    )
    return open_item_table(directory, model, summary)


def precompute_share(
    model: PrerankModel,
    item_feature_table: np.ndarray,
    batch_size: int,
    world: DistributedWorld,
) -> None:
    """A rank other than 0: fill this rank's slice of the item table rank 0 is allocating (the
    directory comes from rank 0 and must be the same path here: a shared filesystem)."""
    model.eval()
    directories = gather_outcomes(lambda: None, f"allocating the item table of {model.name}")
    directory = Path(str(directories[0]))
    _fill_own_slice(model, item_feature_table, directory, batch_size, world, progress=False)


def _fill_own_slice(
    model: PrerankModel,
    item_feature_table: np.ndarray,
    directory: Path,
    batch_size: int,
    world: DistributedWorld,
    progress: bool,
) -> list[SliceSummary]:
    """Fill this rank's slice; every rank's summary once all are done."""

    def fill() -> SliceSummary:
        if not (directory / ITEM_IDS_FILE).is_file():
            raise FileNotFoundError(
                f"{directory / ITEM_IDS_FILE}: rank 0's item table is not visible on rank "
                f"{world.rank} (torchrun precompute needs a filesystem shared by every rank)"
            )
        count = int(np.load(directory / ITEM_IDS_FILE, mmap_mode="r").shape[0])
        rows = slice_rows(count, batch_size, world.rank, world.world_size)
        label = f" rank {world.rank}/{world.world_size}"
        return precompute_slice(
            model, item_feature_table, directory, rows, batch_size, progress=progress, label=label
        )

    return gather_outcomes(fill, f"precomputing the item table of {model.name}")


def _meta_assignment(model: PrerankModel, item_features: torch.Tensor) -> MetaAssignment:
    assignment = model.meta_assignment(item_features)
    if assignment is None:
        raise TypeError(f"{model.name}: a meta matrix but no meta assignment")
    return assignment


def _faiss_meta_index(
    index: faiss.Index, assignment: MetaAssignment, model_index: np.ndarray
) -> tuple[np.ndarray, int]:
    """Nearest meta vector by inner product [b] int32 for the assignment's keys [b, D_c], and the
    number of ties resolved to the model's argmax model_index [b]; refuse a disagreement that is
    no tie."""
    keys = np.ascontiguousarray(assignment.keys.numpy(), dtype=np.float32)
    _, nearest = index.search(keys, 1)
    faiss_index = nearest[:, 0].astype(META_INDEX_DTYPE)
    differ = np.flatnonzero(faiss_index != model_index)
    if differ.size:
        similarity = assignment.similarity.numpy()[differ]
        rows = np.arange(differ.size)
        gap = np.abs(similarity[rows, faiss_index[differ]] - similarity[rows, model_index[differ]])
        if (gap > TIE_MARGIN).any():
            raise MetaIndexMismatchError(
                f"FAISS and argmax disagree on {int((gap > TIE_MARGIN).sum())} items beyond a tie"
            )
        # A tie: serve the model's own argmax, so serving equals `encode_items` exactly.
        faiss_index[differ] = model_index[differ]
    return faiss_index, int(differ.size)
