"""The dot-product Two-Tower baseline, built from the same layers as FIT."""

from __future__ import annotations

from typing import ClassVar

import torch

from prerank_contract.features import FeatureSchema
from prerank_contract.manifest import ModelKind
from prerank_model.config import ModelConfig
from prerank_model.layers.mlp import MLP
from prerank_model.layers.scorers import DotProductScorer
from prerank_model.models.base import (
    PrerankModel,
    field_embeddings,
    gather_user_heads,
    pooled_history,
)


class TwoTower(PrerankModel):
    """User MLP over [profile, masked mean of the history]; item MLP over the item fields;
    logit = dot product of the two D-dim vectors, D = item_heads * head_dim. K = H_u = H_v = 1.
    """

    name = "two_tower"
    kind: ClassVar[ModelKind] = "decoupled"

    def __init__(self, schema: FeatureSchema, config: ModelConfig) -> None:
        super().__init__()
        self.dim = config.item_heads * config.head_dim
        self.user_embedding, self.item_embedding = field_embeddings(schema, config)
        key_dim = self.item_embedding.output_dim
        self.user_tower = MLP(
            self.user_embedding.output_dim + key_dim, config.tower_hidden, self.dim, config.dropout
        )
        self.item_tower = MLP(key_dim, config.tower_hidden, self.dim, config.dropout)
        self.scorer = DotProductScorer()

    @property
    def num_meta_queries(self) -> int:
        return 1

    def encode_user(self, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        pooled = pooled_history(self.item_embedding, history)  # [B, D_c]
        profile = self.user_embedding(user_features)
        user_vector = self.user_tower(torch.cat([profile, pooled], dim=-1))
        return user_vector.view(-1, 1, 1, self.dim)

    def encode_items(self, item_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        item_vector = self.item_tower(self.item_embedding(item_features))
        meta_index = torch.zeros(item_features.shape[0], dtype=torch.int64)
        return item_vector.view(-1, 1, self.dim), meta_index

    def score(
        self, user_heads: torch.Tensor, item_heads: torch.Tensor, meta_index: torch.Tensor
    ) -> torch.Tensor:
        return self.scorer(gather_user_heads(user_heads, meta_index), item_heads)
