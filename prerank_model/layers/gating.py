"""Gated multi-head projections."""

from __future__ import annotations

import torch
from torch import nn

from prerank_model.layers.mlp import MLP


class MultiHeadGatedNetwork(nn.Module):
    """RankTower's multi-head gated network: an MLP emits, per head, a value and a gate;
    head_h = value_h * sigmoid(gate_h). inputs [..., D_in] -> heads [..., H, d].
    """

    def __init__(
        self, input_dim: int, hidden: tuple[int, ...], heads: int, dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.heads, self.dim = heads, dim
        self.mlp = MLP(input_dim, hidden, 2 * heads * dim, dropout)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        values, gates = self.mlp(inputs).chunk(2, dim=-1)
        heads = values * torch.sigmoid(gates)
        return heads.unflatten(-1, (self.heads, self.dim))
