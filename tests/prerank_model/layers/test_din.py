"""DINAttention: masking of padded behaviours, empty histories, shapes, query dependence."""

from __future__ import annotations

import pytest
import torch

from prerank_model.layers.din import DINAttention

B, Q, L, D = 3, 2, 5, 6


@pytest.fixture
def din() -> DINAttention:
    torch.manual_seed(0)
    return DINAttention(D, hidden=(16,))


@pytest.fixture
def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    queries = torch.randn(B, Q, D, generator=generator)
    behaviours = torch.randn(B, L, D, generator=generator)
    mask = torch.tensor(
        [[True] * L, [False, False, True, True, True], [False, True, False, True, False]]
    )
    return queries, behaviours, mask


@torch.no_grad()
def test_output_has_one_interest_vector_per_query(din: DINAttention, inputs) -> None:
    assert din(*inputs).shape == (B, Q, D)


@torch.no_grad()
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_behaviours_change_nothing_whatever_they_hold(
    din: DINAttention, inputs, side: str
) -> None:
    queries, behaviours, mask = inputs
    garbage = 100 * torch.randn(B, 4, D, generator=torch.Generator().manual_seed(2))
    no = torch.zeros(B, 4, dtype=torch.bool)
    if side == "left":
        padded, padded_mask = torch.cat([garbage, behaviours], 1), torch.cat([no, mask], 1)
    else:
        padded, padded_mask = torch.cat([behaviours, garbage], 1), torch.cat([mask, no], 1)
    torch.testing.assert_close(
        din(queries, padded, padded_mask), din(queries, behaviours, mask), atol=1e-6, rtol=0
    )
    # The same garbage made visible does move the output, so the mask is what hides it.
    assert not torch.allclose(
        din(queries, padded, torch.ones_like(padded_mask)), din(queries, behaviours, mask)
    )


@torch.no_grad()
def test_user_without_valid_behaviour_gets_a_zero_interest_vector(
    din: DINAttention, inputs
) -> None:
    queries, behaviours, mask = inputs
    mask = mask.clone()
    mask[1] = False
    interest = din(queries, behaviours, mask)
    assert torch.count_nonzero(interest[1]) == 0
    assert torch.count_nonzero(interest[0]) > 0


@torch.no_grad()
def test_interest_is_a_query_dependent_weighting_of_valid_behaviours(
    din: DINAttention, inputs
) -> None:
    queries, behaviours, mask = inputs
    interest = din(queries, behaviours, mask)  # [B, Q, D]
    assert not torch.allclose(interest[:, 0], interest[:, 1], atol=1e-4)
    # Each interest vector lies in the span of the user's valid behaviours with weights
    # summing to one (a softmax over valid behaviours).
    user = 0
    weights = torch.linalg.lstsq(behaviours[user].T, interest[user].T).solution  # [L, Q]
    torch.testing.assert_close(behaviours[user].T @ weights, interest[user].T, atol=1e-5, rtol=0)
    torch.testing.assert_close(weights.sum(0), torch.ones(Q), atol=1e-5, rtol=0)
    assert (weights > 0).all()


@pytest.mark.parametrize("hidden", [(16, 8), ()])
def test_scores_equal_the_mlp_over_the_concatenated_din_input(hidden) -> None:
    torch.manual_seed(0)
    din = DINAttention(12, hidden)
    queries, behaviours = torch.randn(5, 3, 12), torch.randn(5, 7, 12)
    q = queries.unsqueeze(2).expand(-1, -1, 7, -1)
    h = behaviours.unsqueeze(1).expand(-1, 3, -1, -1)
    reference = din.score_mlp(torch.cat([q, h, q - h, q * h], dim=-1)).squeeze(-1)
    torch.testing.assert_close(din.scores(queries, behaviours), reference, atol=1e-5, rtol=1e-5)
