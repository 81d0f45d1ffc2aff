"""Cross-attention between the heads of the two towers (late interaction inside the scorer)."""

from __future__ import annotations

import math

import torch
from torch import nn


class GatedCrossAttention(nn.Module):
    """Each query head attends over the other side's heads (scaled dot-product attention with
    d x d query, key and value projections); a sigmoid gate over [q, attended] mixes them:
    out = g * attended + (1 - g) * q. queries [N, H_q, d], keys [N, H_k, d] -> [N, H_q, d].
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = 1.0 / math.sqrt(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.gate = nn.Linear(2 * dim, dim)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        logits = torch.einsum("nqd,nkd->nqk", self.query(queries), self.key(keys)) * self.scale
        attended = torch.einsum("nqk,nkd->nqd", torch.softmax(logits, dim=-1), self.value(keys))
        gate = torch.sigmoid(self.gate(torch.cat([queries, attended], dim=-1)))
        return gate * attended + (1.0 - gate) * queries
