"""DAT, the Dual Augmented Two-Tower model (Yu et al., DLP-KDD'21)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from prerank_contract.features import PADDING_INDEX, FeatureSchema
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

# Augmented vectors start small so that they do not dominate the towers' inputs at step 0.
_AUGMENT_INIT_STD = 0.01
# The cosine in [-1, 1] needs a scale to reach confident logits; learned from this start.
_LOGIT_SCALE_INIT = 5.0


class DAT(PrerankModel):
    """The Two-Tower plus a learned augmented vector per user id (a_u) and per item id (a_v),
    each fed into its own tower, whose outputs p_u, p_v are L2-normalised (as in DAT);
    logit = scale * <p_u, p_v> + bias. D = item_heads * head_dim, K = H_u = H_v = 1.

    Trained with the adaptive-mimic loss besides the BCE (offline_jobs/training/losses.py), on
    positive samples only: ||a_u - sg(p_v)||^2 + ||a_v - sg(p_u)||^2, weighted by
    `mimic_loss_weight` (sg = stop-gradient: the mimic loss moves only the augmented vectors,
    never a tower). Choices:
    - chosen: the user id is the first user field, the item id the first item field (the schema
      guarantees the latter; every dataset here has user_id first); unknown ids (index 0) get a
      fixed zero augmented vector.
    - chosen: a learned scale and bias on the cosine: DAT trains with a retrieval loss, our BCE
      needs a calibrated logit. Normalising also bounds the mimic targets (with raw outputs the
      towers and the augmented vectors chase each other and the loss diverges).
    - chosen: the mimic loss is the mean over the batch of y * squared distance; no
      category-alignment loss (it needs category-imbalanced training data we do not model).
    """

    name = "dat"
    kind: ClassVar[ModelKind] = "decoupled"

    def __init__(self, schema: FeatureSchema, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.dim = config.item_heads * config.head_dim
        self.user_embedding, self.item_embedding = field_embeddings(schema, config)
        self.user_augment = nn.Embedding(
            schema.user_fields[0].vocab_size, self.dim, padding_idx=PADDING_INDEX
        )
        self.item_augment = nn.Embedding(
            schema.item_fields[0].vocab_size, self.dim, padding_idx=PADDING_INDEX
        )
        for table in (self.user_augment, self.item_augment):
            nn.init.normal_(table.weight, std=_AUGMENT_INIT_STD)
            with torch.no_grad():
                table.weight[PADDING_INDEX].zero_()
        key_dim = self.item_embedding.output_dim
        self.user_tower = MLP(
            self.user_embedding.output_dim + key_dim + self.dim,
            config.tower_hidden,
            self.dim,
            config.dropout,
        )
        self.item_tower = MLP(key_dim + self.dim, config.tower_hidden, self.dim, config.dropout)
        self.scorer = DotProductScorer()
        self.logit_scale = nn.Parameter(torch.tensor(_LOGIT_SCALE_INIT))
        self.logit_bias = nn.Parameter(torch.tensor(0.0))

    @property
    def num_meta_queries(self) -> int:
        return 1

    def encode_user(self, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        profile = self.user_embedding(user_features)
        pooled = pooled_history(self.item_embedding, history)
        augment = self.user_augmented_vector(user_features)
        user_vector = self.user_tower(torch.cat([profile, pooled, augment], dim=-1))
        return nn.functional.normalize(user_vector, dim=-1).view(-1, 1, 1, self.dim)

    def encode_items(self, item_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        augment = self.item_augmented_vector(item_features)
        item_vector = self.item_tower(
            torch.cat([self.item_embedding(item_features), augment], dim=-1)
        )
        meta_index = torch.zeros(item_features.shape[0], dtype=torch.int64)
        return nn.functional.normalize(item_vector, dim=-1).view(-1, 1, self.dim), meta_index

    def score(
        self, user_heads: torch.Tensor, item_heads: torch.Tensor, meta_index: torch.Tensor
    ) -> torch.Tensor:
        cosine = self.scorer(gather_user_heads(user_heads, meta_index), item_heads)
        return self.logit_scale * cosine + self.logit_bias

    def user_augmented_vector(self, user_features: torch.Tensor) -> torch.Tensor:
        """user_features [B, S_u] -> a_u [B, D], the augmented vector of each user id."""
        return self.user_augment(user_features[:, 0])

    def item_augmented_vector(self, item_features: torch.Tensor) -> torch.Tensor:
        """item_features [N, S_i] -> a_v [N, D], the augmented vector of each item id."""
        return self.item_augment(item_features[:, 0])
