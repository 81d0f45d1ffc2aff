"""FIT's Meta Query Module: a learnable meta matrix whose rows stand for clusters of items."""

from __future__ import annotations

import math

import torch
from torch import nn


class MetaQueryModule(nn.Module):
    """Meta matrix Q [K, D]; query group Q* = (Q Q^T) Q; similarity s = e_c Q^T.

    Training mixes the rows of Q* with softmax(s / tau) (the soft query); evaluation and serving
    take the row of the most similar meta vector (the hard query, idx = argmax s). `temperature`
    is a buffer the trainer anneals.
    """

    temperature: torch.Tensor

    def __init__(self, num_queries: int, key_dim: int, temperature: float) -> None:
        super().__init__()
        self.meta_matrix = nn.Parameter(torch.empty(num_queries, key_dim))
        nn.init.kaiming_uniform_(self.meta_matrix, a=math.sqrt(5))
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def set_temperature(self, tau: float) -> None:
        self.temperature.fill_(tau)

    def query_group(self) -> torch.Tensor:
        """Q* = (Q Q^T) Q: [K, D]."""
        q = self.meta_matrix
        return (q @ q.T) @ q

    def similarity(self, item_keys: torch.Tensor) -> torch.Tensor:
        """item_keys [N, D] -> s [N, K]."""
        return item_keys @ self.meta_matrix.T

    def meta_index(self, item_keys: torch.Tensor) -> torch.Tensor:
        """item_keys [N, D] -> index of the most similar meta vector [N] int64."""
        return self.similarity(item_keys).argmax(dim=-1)

    def soft_query(self, item_keys: torch.Tensor) -> torch.Tensor:
        """item_keys [N, D] -> softmax(s / tau) Q* [N, D]."""
        weights = torch.softmax(self.similarity(item_keys) / self.temperature, dim=-1)
        return weights @ self.query_group()

    def hard_query(self, item_keys: torch.Tensor) -> torch.Tensor:
        """item_keys [N, D] -> Q*[argmax s] [N, D]."""
        return self.query_group()[self.meta_index(item_keys)]

    def query(self, item_keys: torch.Tensor) -> torch.Tensor:
        """The soft query in training mode, the hard one in eval mode: [N, D]."""
        return self.soft_query(item_keys) if self.training else self.hard_query(item_keys)
