"""Precompute every catalogue item's scorer-side heads and hard meta index, offline."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faiss
import numpy as np
import torch
from tqdm import tqdm

from prerank_model.models.base import PrerankModel
from prerank_model.models.fit import FIT

log = logging.getLogger(__name__)

# A FAISS assignment may differ from torch's argmax only where two meta vectors tie this closely.
TIE_MARGIN = 1e-5


@dataclass(frozen=True)
class ItemTable:
    """Catalogue rows, sorted by item id.

    item_ids [N] int64, item_features [N, S_i] int64, item_heads [N, H_v, d] float32,
    meta_index [N] int32; meta_matrix [K, D_c] float32 and faiss_index for FIT only.
    """

    item_ids: np.ndarray
    item_features: np.ndarray
    item_heads: np.ndarray
    meta_index: np.ndarray
    meta_matrix: np.ndarray | None
    faiss_index: faiss.Index | None


class MetaIndexMismatchError(ValueError):
    """FAISS and the model disagree on an item's meta vector where no tie explains it."""


@torch.no_grad()
def precompute_items(
    model: PrerankModel,
    item_ids: np.ndarray,
    item_feature_table: np.ndarray,
    batch_size: int,
    *,
    progress: bool = True,
) -> ItemTable:
    """Run `encode_items` over the catalogue in batches; for FIT, assign meta indices with a
    FAISS inner-product index over the meta matrix and check them against the model's argmax."""
    model.eval()
    item_ids = np.sort(np.asarray(item_ids, dtype=np.int64))
    features = item_feature_table[item_ids]
    heads, indices = [], []
    for start in tqdm(
        range(0, item_ids.size, batch_size),
        desc=f"precompute {model.name}",
        disable=not progress,
        unit="batch",
    ):
        batch_heads, batch_index = model.encode_items(
            torch.from_numpy(features[start : start + batch_size])
        )
        heads.append(batch_heads.numpy())
        indices.append(batch_index.numpy())
    item_heads = np.concatenate(heads).astype(np.float32)
    meta_index = np.concatenate(indices).astype(np.int32)
    meta_matrix, index = None, None
    if isinstance(model, FIT):
        meta_matrix = model.meta_query.meta_matrix.detach().numpy().astype(np.float32)
        index = faiss.IndexFlatIP(meta_matrix.shape[1])
        index.add(meta_matrix)
        keys = model.item_embedding(torch.from_numpy(features)).numpy().astype(np.float32)
        meta_index = _faiss_meta_index(index, keys, meta_index, model)
    log.info("precomputed %d items of %s", item_ids.size, model.name)
    return ItemTable(item_ids, features, item_heads, meta_index, meta_matrix, index)


def _faiss_meta_index(
    index: faiss.Index, keys: np.ndarray, model_index: np.ndarray, model: FIT
) -> np.ndarray:
    """Nearest meta vector by inner product [N] int32; refuse a disagreement that is no tie."""
    _, nearest = index.search(keys, 1)
    faiss_index = nearest[:, 0].astype(np.int32)
    differ = np.flatnonzero(faiss_index != model_index)
    if differ.size:
        similarity = model.meta_query.similarity(torch.from_numpy(keys[differ])).numpy()
        rows = np.arange(differ.size)
        gap = np.abs(similarity[rows, faiss_index[differ]] - similarity[rows, model_index[differ]])
        if (gap > TIE_MARGIN).any():
            raise MetaIndexMismatchError(
                f"FAISS and argmax disagree on {int((gap > TIE_MARGIN).sum())} items beyond a tie"
            )
        # A tie: serve the model's own argmax, so serving equals `encode_items` exactly.
        faiss_index[differ] = model_index[differ]
        log.warning("%d items tie between meta vectors; the model's argmax kept", differ.size)
    return faiss_index
