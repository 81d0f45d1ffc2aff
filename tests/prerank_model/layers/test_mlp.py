"""MLP: the first layer split over the parts of its input (`forward_parts`)."""

from __future__ import annotations

import pytest
import torch

from prerank_model.layers.mlp import MLP


@torch.no_grad()
@pytest.mark.parametrize("hidden", [(8,), (8, 6), ()], ids=["one hidden", "two hidden", "linear"])
def test_forward_parts_is_forward_of_the_broadcast_concatenation(hidden: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    mlp = MLP(3 + 4 + 2, hidden, 5, dropout=0.0).eval()
    shared = torch.randn(2, 1, 3)  # one row per batch, broadcast over the 7 queries
    per_row = torch.randn(2, 7, 4)
    constant = torch.randn(7, 2)  # the same for every batch
    concatenated = torch.cat(
        [shared.expand(-1, 7, -1), per_row, constant.expand(2, -1, -1)], dim=-1
    )
    expected = mlp(concatenated)
    assert expected.shape == (2, 7, 5)
    torch.testing.assert_close(mlp.forward_parts([shared, per_row, constant]), expected)
