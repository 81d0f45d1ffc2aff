"""The scorer's candidate layout: blocks of rows that share one meta index.

A bundle's scorer graph (format 2) takes its candidates grouped by meta index into G blocks of
R rows each, `item_heads [G, R, H_v, d]` and one `meta_index [G]` per block, and returns
`logits [G, R]`. So FIT's scorer computes each block's similarities as one GEMM against the one
user representation its block picks, instead of one tiny product per candidate. The service
lays out each request's candidates (`candidate_blocks`) and reads each candidate's logit back
from its slot; export's parity check does the same. Numpy only: the service never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prerank_contract.graphs import ITEM_HEADS, META_INDEX

# The smallest integer type the stable argsort sorts by radix (numpy does for 16 bits or less).
_RADIX_SORT_DTYPE = np.int16
_RADIX_SORT_MAX = int(np.iinfo(_RADIX_SORT_DTYPE).max)
# R of FIT's requests unless the service is told otherwise (PRERANK_SCORER_BLOCK_ROWS). The
# layout, the gather into it and the scorer at 500 to 5,000 candidates, R from 8 to 48: 16 was
# the fastest or within 5% of it at every size (fewer rows pad less, more rows make fewer GEMM
# calls; 32 ran 5-10% slower below 1,000 candidates, 8 paid a call per few candidates).
DEFAULT_BLOCK_ROWS = 16


@dataclass(frozen=True)
class CandidateBlocks:
    """N candidates laid out in G blocks of R rows.

    rows [G * R]: the candidate (its position in the request's order) each slot scores; a
    padding slot reads candidate 0 (a real item, so its logit is finite; it is never read).
    block_meta_index [G]: the meta index every row of the block shares.
    slots [N]: the slot of each candidate, where its logit lies in the flattened [G * R] logits.
    """

    rows: np.ndarray
    block_meta_index: np.ndarray
    slots: np.ndarray
    block_rows: int

    @property
    def blocks(self) -> int:
        return int(self.block_meta_index.size)

    def scorer_items(self, heads: np.ndarray) -> dict[str, np.ndarray]:
        """The scorer's item inputs from the item heads of every slot, [G * R, H_v, d] in slot
        order: item_heads [G, R, H_v, d] and meta_index [G]."""
        return {
            ITEM_HEADS: heads.reshape(self.blocks, self.block_rows, *heads.shape[1:]),
            META_INDEX: self.block_meta_index,
        }


def _group_shifts(counts: np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """counts [K] candidates per meta index -> (each group's first slot minus its first sorted
    position [K], each block's meta index [G]). A loop over the K groups: K is small, and numpy's
    per-call cost on K-long arrays is several times that of Python's arithmetic."""
    shifts, block_meta_index = [], []
    slot = first = 0
    for group, count in enumerate(counts.tolist()):
        blocks = -(-count // block_rows)
        shifts.append(slot - first)
        block_meta_index += [group] * blocks
        slot += blocks * block_rows
        first += count
    return np.array(shifts, np.int64), np.array(block_meta_index, np.int64)


def candidate_blocks(
    meta_index: np.ndarray, block_rows: int, meta_queries: int | None = None
) -> CandidateBlocks:
    """meta_index [N] (values in [0, K)) -> the candidates grouped by meta index in blocks of
    `block_rows`, each group padded to a whole number of blocks (at most K * (R - 1) padding
    slots). Within a group the candidates keep their request order (a stable sort).

    `meta_queries`: K, when known (else the largest meta index + 1). With K = 1 (every model
    but FIT: the meta index is always 0) nothing needs grouping: the candidates form one block
    of N rows, in order, with no padding."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be at least 1, not {block_rows}")
    candidates = meta_index.size
    if candidates == 0:
        empty = np.zeros(0, np.int64)
        return CandidateBlocks(empty, empty, empty, block_rows)
    if meta_queries == 1:
        in_order = np.arange(candidates, dtype=np.int64)
        return CandidateBlocks(in_order, np.zeros(1, np.int64), in_order, candidates)
    groups = meta_queries or int(meta_index.max()) + 1
    key = meta_index.astype(_RADIX_SORT_DTYPE if groups <= _RADIX_SORT_MAX else np.int64)
    order = np.argsort(key, kind="stable")
    shifts, block_meta_index = _group_shifts(np.bincount(meta_index, minlength=groups), block_rows)
    # the p-th candidate in sorted order goes to slot p + its group's shift
    slot_of_sorted = shifts[meta_index[order]]
    slot_of_sorted += np.arange(candidates)
    rows = np.zeros(block_meta_index.size * block_rows, np.int64)  # padding reads candidate 0
    rows[slot_of_sorted] = order
    slots = np.empty(candidates, np.int64)
    slots[order] = slot_of_sorted
    return CandidateBlocks(rows, block_meta_index, slots, block_rows)
