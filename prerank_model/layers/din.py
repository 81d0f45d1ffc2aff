"""DIN attention (Zhou et al., KDD'18): a query-conditioned weighting of the behaviour sequence."""

from __future__ import annotations

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
        self.score_mlp = MLP(4 * dim, hidden, 1)

    def forward(
        self, queries: torch.Tensor, behaviours: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """queries [B, Q, D], behaviours [B, L, D], mask [B, L] bool -> interest [B, Q, D]."""
        q = queries.unsqueeze(2)  # [B, Q, 1, D]
        h = behaviours.unsqueeze(1).expand(-1, queries.shape[1], -1, -1)  # [B, Q, L, D]
        q = q.expand_as(h)
        scores = self.score_mlp(torch.cat([q, h, q - h, q * h], dim=-1)).squeeze(-1)  # [B, Q, L]
        valid = mask.unsqueeze(1).to(scores.dtype)  # [B, 1, L]
        weights = torch.softmax(scores + (1.0 - valid) * _MASKED_SCORE, dim=-1) * valid
        return torch.einsum("bql,bld->bqd", weights, behaviours)
