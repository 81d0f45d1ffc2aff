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


def _reference_linear_attention(
    din: DINAttention, queries: torch.Tensor, behaviours: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The linear unit written the plain way, for autograd to differentiate."""
    scores = din.scores(queries, behaviours)  # [B, Q, L]
    valid = mask.unsqueeze(1).to(scores.dtype)
    weights = torch.softmax(scores + (1.0 - valid) * -1e9, dim=-1) * valid
    return weights @ behaviours


@pytest.mark.parametrize("queries_per_user", [1, Q])
def test_linear_unit_training_path_has_autograds_values_and_gradients(queries_per_user) -> None:
    """The training path of the linear unit (`LinearAttention`, a hand-written backward) against
    autograd through the plain formula, in float64: outputs and the gradients of the queries,
    the behaviours and the unit's weights, with padding and a user without valid behaviours."""
    torch.manual_seed(0)
    din = DINAttention(D, hidden=()).double().train()
    generator = torch.Generator().manual_seed(3)
    queries = torch.randn(B, queries_per_user, D, generator=generator, dtype=torch.float64)
    behaviours = torch.randn(B, L, D, generator=generator, dtype=torch.float64)
    mask = torch.tensor(
        [[True] * L, [False, False, True, True, True], [False] * L]
    )  # the last user has no valid behaviour
    upstream = torch.randn(B, queries_per_user, D, generator=generator, dtype=torch.float64)
    results = []
    for forward in (din, lambda *a: _reference_linear_attention(din, *a)):
        din.zero_grad()
        q, h = queries.clone().requires_grad_(), behaviours.clone().requires_grad_()
        interest = forward(q, h, mask)
        (interest * upstream).sum().backward()
        grads = [p.grad.clone() for p in din.parameters()]
        results.append((interest.detach(), q.grad, h.grad, *grads))
    assert din.training and torch.count_nonzero(results[0][0][2]) == 0
    for ours, reference in zip(*results, strict=True):
        torch.testing.assert_close(ours, reference, atol=1e-10, rtol=1e-10)
    # the padded behaviours of user 1 get no gradient, its valid ones do
    assert torch.count_nonzero(results[0][2][1, :2]) == 0
    assert torch.count_nonzero(results[0][2][1, 2:]) > 0


def test_linear_unit_training_and_eval_paths_agree() -> None:
    torch.manual_seed(0)
    din = DINAttention(D, hidden=())
    generator = torch.Generator().manual_seed(4)
    queries, behaviours = torch.randn(B, Q, D, generator=generator), torch.randn(B, L, D)
    mask = torch.rand(B, L, generator=generator) > 0.3
    training = din.train()(queries, behaviours, mask)
    with torch.no_grad():
        evaluated = din.eval()(queries, behaviours, mask)
    torch.testing.assert_close(training.detach(), evaluated, atol=1e-6, rtol=1e-6)
