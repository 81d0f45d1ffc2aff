"""IntTower (Li et al., CIKM'22): LightSE, multi-head layer-wise towers, FE-Block, CIR."""

from __future__ import annotations

from typing import ClassVar

import torch

from prerank_contract.features import FeatureSchema
from prerank_contract.manifest import ModelKind
from prerank_model.config import ModelConfig
from prerank_model.layers.field_weighting import LightSE
from prerank_model.layers.mlp import MLP, LayerwiseHeadsMLP
from prerank_model.layers.scorers import SumMaxScorer
from prerank_model.models.base import (
    PrerankModel,
    field_embeddings,
    gather_user_heads,
    pooled_history,
)


class IntTower(PrerankModel):
    """User fields (profile + behaviour-pooled item fields) and item fields each reweighted by
    LightSE; every hidden layer of the user tower emits H_u heads of size d, so
    `encode_user` -> [B, 1, L * H_u, d] (L = hidden layers, shallowest first); the item tower's
    last layer emits H_v heads. FE-Block score = sum over all user heads (every layer) of the max
    over item heads of <u, v> (sum-max). Decoupled: the item heads are stored.

    Trained with CIR (contrastive interaction regularisation) besides the BCE
    (offline_jobs/training/losses.py), weighted by `contrastive_weight`: for each positive sample
    b, -log softmax_j(cos(u_b, v_j) / tau)[b] over the batch's items j (in-batch negatives).
    Choices:
    - chosen: u_b = mean of the deepest layer's user heads, v_j = mean of the item heads (the
      paper contrasts the towers' last-layer outputs; the means keep the dims equal when H_u !=
      H_v); gradients reach both towers; duplicate items in a batch are not masked.
    - chosen: tau = `contrastive_temperature` (0.07, the reference code's value), weight 0.1.
    - chosen: no logit bias after the sum-max (it is parameter-free, as in the paper).
    """

    name = "inttower"
    kind: ClassVar[ModelKind] = "decoupled"

    def __init__(self, schema: FeatureSchema, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.user_embedding, self.item_embedding = field_embeddings(schema, config)
        user_fields = self.user_embedding.num_fields + self.item_embedding.num_fields
        self.user_field_weights = LightSE(user_fields)
        self.item_field_weights = LightSE(self.item_embedding.num_fields)
        self.user_tower = LayerwiseHeadsMLP(
            user_fields * config.embedding_dim,
            config.tower_hidden,
            config.user_heads,
            config.head_dim,
            config.dropout,
        )
        self.item_tower = MLP(
            self.item_embedding.output_dim,
            config.tower_hidden,
            config.item_heads * config.head_dim,
            config.dropout,
        )
        self.scorer = SumMaxScorer()

    @property
    def num_meta_queries(self) -> int:
        return 1

    def encode_user(self, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        profile = self.user_embedding(user_features)
        pooled = pooled_history(self.item_embedding, history)
        fields = torch.cat([profile, pooled], dim=-1).unflatten(-1, (-1, self.config.embedding_dim))
        heads = self.user_tower(self.user_field_weights(fields).flatten(-2))  # [B, L * H_u, d]
        return heads.unsqueeze(1)

    def encode_items(self, item_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fields = self.item_embedding(item_features).unflatten(-1, (-1, self.config.embedding_dim))
        heads = self.item_tower(self.item_field_weights(fields).flatten(-2))
        heads = heads.view(-1, self.config.item_heads, self.config.head_dim)
        return heads, torch.zeros(item_features.shape[0], dtype=torch.int64)

    def score(
        self, user_heads: torch.Tensor, item_heads: torch.Tensor, meta_index: torch.Tensor
    ) -> torch.Tensor:
        return self.scorer(gather_user_heads(user_heads, meta_index), item_heads)
