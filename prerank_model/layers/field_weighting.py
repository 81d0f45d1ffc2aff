"""Field reweighting: a learned importance weight per feature field, computed from the fields."""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    """COLD's SE block: w = sigmoid(W [e_1, ..., e_F] + b), one weight per field; out = w_f e_f.

    fields [..., F, e] -> [..., F, e]. The squeeze reads the whole concatenation (COLD's form),
    not a per-field mean as in SENet.
    """

    def __init__(self, num_fields: int, dim: int) -> None:
        super().__init__()
        self.excitation = nn.Linear(num_fields * dim, num_fields)

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.excitation(fields.flatten(-2)))  # [..., F]
        return fields * weights.unsqueeze(-1)


class LightSE(nn.Module):
    """IntTower's LightSE: z_f = mean_e(e_f); a = softmax(W z) (W: F x F, no bias);
    out = e_f + a_f e_f (residual). fields [..., F, e] -> [..., F, e].
    """

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        self.excitation = nn.Linear(num_fields, num_fields, bias=False)

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.excitation(fields.mean(dim=-1)), dim=-1)  # [..., F]
        return fields + fields * weights.unsqueeze(-1)
