"""The scorer's candidate layout: blocks of rows that share a meta index."""

from __future__ import annotations

import numpy as np
import pytest

from prerank_contract.blocks import candidate_blocks


@pytest.mark.parametrize("block_rows", [1, 3, 32])
@pytest.mark.parametrize("candidates", [1, 2, 9, 1_000])
def test_every_candidate_has_one_slot_in_a_block_of_its_meta_index(
    candidates: int, block_rows: int
) -> None:
    rng = np.random.default_rng(candidates + block_rows)
    meta_index = np.minimum(rng.integers(0, 8, candidates), rng.integers(0, 8, candidates))
    layout = candidate_blocks(meta_index, block_rows)
    assert layout.rows.shape == (layout.blocks * block_rows,)
    assert layout.rows[layout.slots].tolist() == list(range(candidates))  # each read back
    assert np.unique(layout.slots).size == candidates  # no two share a slot
    block_of_slot = np.repeat(layout.block_meta_index, block_rows)
    assert (meta_index[layout.rows[layout.slots]] == block_of_slot[layout.slots]).all()
    padding = np.setdiff1d(np.arange(layout.rows.size), layout.slots)
    assert (layout.rows[padding] == 0).all()  # a real candidate, whose logit is never read
    groups = np.bincount(meta_index)
    assert layout.blocks == int((-(-groups // block_rows)).sum())  # the fewest whole blocks


def test_a_group_keeps_the_request_order_and_padding_reads_the_first_candidate() -> None:
    meta_index = np.array([2, 0, 2, 2, 0], np.int64)
    layout = candidate_blocks(meta_index, block_rows=2)
    assert layout.block_meta_index.tolist() == [0, 2, 2]
    assert layout.rows.tolist() == [1, 4, 0, 2, 3, 0]  # group 2's second block padded
    assert layout.slots.tolist() == [2, 0, 3, 4, 1]


def test_one_meta_query_makes_one_block_in_order_without_sorting() -> None:
    layout = candidate_blocks(np.zeros(5, np.int64), block_rows=2, meta_queries=1)
    assert layout.blocks == 1 and layout.block_rows == 5
    assert layout.rows.tolist() == layout.slots.tolist() == [0, 1, 2, 3, 4]


def test_no_candidates_make_no_blocks_and_a_block_needs_a_row() -> None:
    layout = candidate_blocks(np.zeros(0, np.int64), block_rows=4)
    assert layout.blocks == 0 and layout.rows.size == layout.slots.size == 0
    with pytest.raises(ValueError, match="block_rows"):
        candidate_blocks(np.zeros(3, np.int64), block_rows=0)
