"""COLD (Wang et al., 2020): one network over all user and item fields, with SE reweighting."""

from __future__ import annotations

from typing import ClassVar

import torch

from prerank_contract.features import FeatureSchema
from prerank_contract.manifest import ModelKind
from prerank_model.config import ModelConfig
from prerank_model.layers.field_weighting import SqueezeExcitation
from prerank_model.layers.mlp import MLP
from prerank_model.models.base import (
    PrerankModel,
    field_embeddings,
    gather_user_heads,
    pooled_history,
)


class COLD(PrerankModel):
    """Fields = user profile fields, the behaviour-pooled item fields, the candidate's item fields
    (F = F_u + 2 F_i, each of size e = embedding_dim) -> SE field weights -> MLP -> logit.

    Pairwise, mapped onto the three methods so that the whole network is `score` and no weight
    runs outside it (the export can put encode_user + score into one pair graph):
    - `encode_user` -> the user-side field embeddings [B, 1, F_u + F_i, e] (K = 1; the "heads"
      are fields, d = e): embedding look-ups and the history mean only, no learned mixing;
    - `encode_items` -> the item field embeddings [N, F_i, e] (look-ups only), meta_index zeros;
    - `score` -> concatenates both sides per pair, SE, MLP: [N].
    Choices:
    - chosen: COLD's SE form, sigmoid(W [e_1..e_F] + b), one weight per field (SqueezeExcitation);
    - chosen: the MLP has `tower_hidden` hidden layers (the same budget as the towers); no cross
      features (none of our datasets has any) and none of COLD's engineering (column-wise
      computation, float16) since ONNX Runtime runs the graph.
    """

    name = "cold"
    kind: ClassVar[ModelKind] = "pairwise"

    def __init__(self, schema: FeatureSchema, config: ModelConfig) -> None:
        super().__init__()
        self.user_embedding, self.item_embedding = field_embeddings(schema, config)
        self.dim = config.embedding_dim
        self.num_user_fields = self.user_embedding.num_fields + self.item_embedding.num_fields
        num_fields = self.num_user_fields + self.item_embedding.num_fields
        self.field_weights = SqueezeExcitation(num_fields, self.dim)
        self.mlp = MLP(num_fields * self.dim, config.tower_hidden, 1, config.dropout)

    @property
    def num_meta_queries(self) -> int:
        return 1

    def encode_user(self, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        profile = self.user_embedding(user_features)  # [B, F_u * e]
        pooled = pooled_history(self.item_embedding, history)  # [B, F_i * e]
        fields = torch.cat([profile, pooled], dim=-1).unflatten(
            -1, (self.num_user_fields, self.dim)
        )
        return fields.unsqueeze(1)

    def encode_items(self, item_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fields = self.item_embedding(item_features).unflatten(
            -1, (self.item_embedding.num_fields, self.dim)
        )
        return fields, torch.zeros(item_features.shape[0], dtype=torch.int64)

    def score(
        self, user_heads: torch.Tensor, item_heads: torch.Tensor, meta_index: torch.Tensor
    ) -> torch.Tensor:
        fields = torch.cat([gather_user_heads(user_heads, meta_index), item_heads], dim=1)
        return self.mlp(self.field_weights(fields).flatten(1)).squeeze(-1)
