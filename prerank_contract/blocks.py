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

# The smallest integer type the stable argsort sorts by radix (numpy does for 16 bits or less).
_RADIX_SORT_DTYPE = np.int16
_RADIX_SORT_MAX = int(np.iinfo(_RADIX_SORT_DTYPE).max)
# R of FIT's requests unless the service is told otherwise (PRERANK_SCORER_BLOCK_ROWS): at 1,000
# and 5,000 candidates its scorer ran as fast with blocks of 24-48 rows, slower below 16 (a GEMM
# call per block) and at 1,000 candidates above 48 (the padding, up to K * (R - 1) rows).
DEFAULT_BLOCK_ROWS = 32


@dataclass(frozen=True)
class CandidateBlocks:
    """N candidates laid out in G blocks of R rows.

    rows [G * R]: the candidate (its position in the request's order) each slot scores; a
    padding slot repeats its block's first candidate, so every slot holds a real item.
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
    counts = np.bincount(meta_index, minlength=groups)
    padded = -(-counts // block_rows) * block_rows  # each group's slots
    # the p-th candidate in sorted order goes to slot p + (its group's first slot - first rank)
    shift = (np.cumsum(padded) - padded) - (np.cumsum(counts) - counts)
    slot_of_sorted = shift[meta_index[order]]
    slot_of_sorted += np.arange(candidates)
    rows = np.full(int(padded.sum()), -1, np.int64)
    rows[slot_of_sorted] = order
    grid = rows.reshape(-1, block_rows)
    np.copyto(grid, grid[:, :1], where=grid < 0)  # padding repeats the block's first candidate
    slots = np.empty(candidates, np.int64)
    slots[order] = slot_of_sorted
    block_meta_index = np.repeat(np.arange(groups, dtype=np.int64), padded // block_rows)
    return CandidateBlocks(rows, block_meta_index, slots, block_rows)
