"""DIN attention (Zhou et al., KDD'18): a query-conditioned weighting of the behaviour sequence."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prerank_model.layers.mlp import MLP

# Added to the scores of padded behaviours before the softmax: exp() of it is exactly 0 in fp32.
_MASKED_SCORE = -1e9


class DINAttention(nn.Module):
    """Weights each behaviour by an MLP over [q, h, q - h, q * h]; padding is masked out.

    Weights are a softmax over the valid behaviours (a choice, see docs/MODEL.md); a user with
    no valid behaviour gets a zero interest vector.
    """

    def __init__(self, dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.dim = dim
        self.score_mlp = MLP(4 * dim, hidden, 1, dropout=0.0)

    def forward(
        self, queries: torch.Tensor, behaviours: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """queries [B, Q, D], behaviours [B, L, D], mask [B, L] bool -> interest [B, Q, D]."""
        valid = mask.unsqueeze(1).to(behaviours.dtype)  # [B, 1, L]
        masked = (1.0 - valid) * _MASKED_SCORE
        if len(self.score_mlp) == 1 and torch.is_grad_enabled() and self.training:
            query_part, folded = self._linear_unit(queries)
            return LinearAttention.apply(query_part, folded, behaviours, masked, valid)
        weights = torch.softmax(self.scores(queries, behaviours) + masked, dim=-1) * valid
        return torch.bmm(weights, behaviours)

    def scores(self, queries: torch.Tensor, behaviours: torch.Tensor) -> torch.Tensor:
        """The MLP over [q, h, q - h, q * h] -> [B, Q, L], without building that [B, Q, L, 4D]
        input: its first Linear splits as W [q, h, q - h, q * h] = (W_q + W_d) q + (W_h - W_d) h
        + W_p (q * h), so only the product term is computed per (query, behaviour) pair.

        With no hidden layer (W is [1, 4D]) the two terms in h fold into one vector per query,
        m_q = w_p * q + (w_h - w_d), and the scores are one batched matmul of h [B, L, D] with
        m [B, Q, D]: no [B, Q, L, D] product is built, which would be a large share of FIT's
        training step.
        """
        first, *rest = self.score_mlp
        assert isinstance(first, nn.Linear)
        if not rest:  # H = 1: a dot-product attention
            query_part, folded = self._linear_unit(queries)
            return torch.baddbmm(query_part, folded, behaviours.transpose(1, 2))  # [B, Q, L]
        w_q, w_h, w_d, w_p = first.weight.split(self.dim, dim=1)  # each [H, D]
        query_part = queries @ (w_q + w_d).T + first.bias  # [B, Q, H]
        behaviour_part = behaviours @ (w_h - w_d).T  # [B, L, H]
        pairs = queries.unsqueeze(2) * behaviours.unsqueeze(1)  # [B, Q, L, D]
        hidden = pairs @ w_p.T + query_part.unsqueeze(2) + behaviour_part.unsqueeze(1)
        for layer in rest:
            hidden = layer(hidden)
        return hidden.squeeze(-1)

    def _linear_unit(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The linear unit's scores s = c_q + m_q . h as (c_q [B, Q, 1], m_q [B, Q, D])."""
        first = self.score_mlp[0]
        assert isinstance(first, nn.Linear)
        w_q, w_h, w_d, w_p = first.weight.split(self.dim, dim=1)  # each [1, D]
        return queries @ (w_q + w_d).T + first.bias, queries * w_p + (w_h - w_d)


class LinearAttention(torch.autograd.Function):
    """The linear unit's masked attention, interest = (softmax(c + m h^T + masked) * valid) h,
    with a hand-written backward: what autograd records for it (a batched matmul with a
    broadcast input, the softmax, the mask and a second batched matmul) is a measurable share of
    FIT's training step. Here the two [B, L, D] gradients of the behaviours are one batched
    matmul, and the forward keeps only the weights.

    c [B, Q, 1], m [B, Q, D], behaviours h [B, L, D], masked and valid [B, 1, L] -> [B, Q, D].
    The same function as `DINAttention`'s eval path; `tests/prerank_model/layers/test_din.py`
    checks values and gradients against autograd's.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        query_part: torch.Tensor,
        folded: torch.Tensor,
        behaviours: torch.Tensor,
        masked: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        scores = torch.baddbmm(query_part + masked, folded, behaviours.transpose(1, 2))
        weights = torch.softmax(scores, dim=-1) * valid  # [B, Q, L]
        ctx.save_for_backward(query_part, folded, behaviours, weights)
        return torch.bmm(weights, behaviours)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_interest: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None, None]:
        query_part, folded, behaviours, weights = ctx.saved_tensors
        grad_weights = torch.bmm(grad_interest, behaviours.transpose(1, 2))  # [B, Q, L]
        # softmax backward; a padded behaviour has weight 0, so the mask needs no term of its own
        grad_scores = weights * (grad_weights - (weights * grad_weights).sum(-1, keepdim=True))
        grad_folded = torch.bmm(grad_scores, behaviours)  # [B, Q, D]
        # dL/dh = weights^T g + grad_scores^T m, as one [B, L, 2Q] x [B, 2Q, D] matmul
        grad_behaviours = torch.bmm(
            torch.cat([weights, grad_scores], dim=1).transpose(1, 2),
            torch.cat([grad_interest, folded], dim=1),
        )
        # c is constant over the softmax's axis, so its exact gradient is zero (autograd's is
        # rounding noise, which Adam would turn into full-size steps of the weights behind c)
        return torch.zeros_like(query_part), grad_folded, grad_behaviours, None, None
