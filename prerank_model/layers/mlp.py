"""A plain multi-layer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Sequential):
    """Linear -> ReLU (-> Dropout) per hidden size, then a final Linear to `output_dim`."""

    def __init__(
        self, input_dim: int, hidden: tuple[int, ...], output_dim: int, dropout: float
    ) -> None:
        layers: list[nn.Module] = []
        size = input_dim
        for width in hidden:
            layers += [nn.Linear(size, width), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            size = width
        layers.append(nn.Linear(size, output_dim))
        super().__init__(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return super().forward(inputs)

    def forward_parts(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """`forward(torch.cat(parts, -1))` for parts [..., D_i] that broadcast against each other:
        the first Linear applied to each part and the products summed, so a part shared by
        many rows (FIT's profile, the same for all K queries) is multiplied once, and no
        broadcast copy of it is built."""
        first, *rest = self
        assert isinstance(first, nn.Linear)
        weights = first.weight.split([part.shape[-1] for part in parts], dim=1)
        hidden = first.bias
        for part, weight in zip(parts, weights, strict=True):
            hidden = hidden + part @ weight.T
        for layer in rest:
            hidden = layer(hidden)
        return hidden


class LayerwiseHeadsMLP(nn.Module):
    """IntTower's multi-head tower: Linear -> ReLU (-> Dropout) per hidden size, and every hidden
    layer's output projected to `heads` heads of size `dim`. With no hidden layer the input itself
    is projected. inputs [..., D_in] -> heads [..., layers * heads, d], shallowest layer first.
    """

    def __init__(
        self, input_dim: int, hidden: tuple[int, ...], heads: int, dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.heads, self.dim = heads, dim
        self.layers = nn.ModuleList()
        size = input_dim
        for width in hidden:
            block: list[nn.Module] = [nn.Linear(size, width), nn.ReLU()]
            if dropout:
                block.append(nn.Dropout(dropout))
            self.layers.append(nn.Sequential(*block))
            size = width
        widths = hidden or (input_dim,)
        self.projections = nn.ModuleList(nn.Linear(width, heads * dim) for width in widths)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs, x = [], inputs
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        outputs = outputs or [inputs]
        heads = [
            projection(x).unflatten(-1, (self.heads, self.dim))
            for projection, x in zip(self.projections, outputs, strict=True)
        ]
        return torch.cat(heads, dim=-2)
