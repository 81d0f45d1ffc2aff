"""A plain multi-layer perceptron."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Sequential):
    """Linear -> ReLU (-> Dropout) per hidden size, then a final Linear to `output_dim`."""

    def __init__(
        self, input_dim: int, hidden: tuple[int, ...], output_dim: int, dropout: float = 0.0
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
