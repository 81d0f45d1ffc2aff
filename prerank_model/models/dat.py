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
    TrainingOutput,
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

    Adaptive-mimic loss, on positive samples only: ||a_u - sg(p_v)||^2 + ||a_v - sg(p_u)||^2,
    weighted by `mimic_loss_weight` (sg = stop-gradient: the mimic loss moves only the augmented
    vectors, never a tower). Choices:
    - chosen: the user id is the first user field, the item id the first item field (the schema
      guarantees the latter; both datasets have user_id first); unknown ids (index 0) get a fixed
      zero augmented vector.
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
        self.dim = config.item_heads * config.head_dim
        self.mimic_loss_weight = config.mimic_loss_weight
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
        augment = self.user_augment(user_features[:, 0])  # [B, D]
        user_vector = self.user_tower(torch.cat([profile, pooled, augment], dim=-1))
        return nn.functional.normalize(user_vector, dim=-1).view(-1, 1, 1, self.dim)

    def encode_items(self, item_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        augment = self.item_augment(item_features[:, 0])  # [N, D]
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

    def training_forward(
        self,
        user_features: torch.Tensor,
        history: torch.Tensor,
        item_features: torch.Tensor,
        labels: torch.Tensor,
    ) -> TrainingOutput:
        """Logits [B] and the weighted adaptive-mimic loss."""
        user_heads = self.encode_user(user_features, history)
        item_heads, meta_index = self.encode_items(item_features)
        logits = self.score(user_heads, item_heads, meta_index)
        mimic = self.mimic_loss(user_features, item_features, user_heads, item_heads, labels)
        return TrainingOutput(logits, self.mimic_loss_weight * mimic)

    def mimic_loss(
        self,
        user_features: torch.Tensor,
        item_features: torch.Tensor,
        user_heads: torch.Tensor,
        item_heads: torch.Tensor,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """mean_b y_b (||a_u - sg(p_v)||^2 + ||a_v - sg(p_u)||^2): a scalar.

        user_heads [B, 1, 1, D], item_heads [B, 1, D] (this batch's pairs), labels [B].
        """
        user_vector = user_heads.reshape(-1, self.dim).detach()
        item_vector = item_heads.reshape(-1, self.dim).detach()
        user_gap = (self.user_augment(user_features[:, 0]) - item_vector).pow(2).sum(-1)
        item_gap = (self.item_augment(item_features[:, 0]) - user_vector).pow(2).sum(-1)
        return (labels * (user_gap + item_gap)).mean()
