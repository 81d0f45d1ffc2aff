"""The interface every model implements; training, export, precompute and parity call only it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from prerank_contract.features import PADDING_INDEX, FeatureSchema
from prerank_contract.manifest import ModelKind
from prerank_model.config import ModelConfig
from prerank_model.layers.embedding import FieldEmbedding
from prerank_model.layers.pooling import masked_mean


def field_embeddings(
    schema: FeatureSchema, config: ModelConfig
) -> tuple[FieldEmbedding, FieldEmbedding]:
    """The user-field and item-field embeddings every model starts from, built in that order
    with the config's dimension and init."""
    user = FieldEmbedding(schema.user_fields, config.embedding_dim, config.embedding_init_std)
    item = FieldEmbedding(schema.item_fields, config.embedding_dim, config.embedding_init_std)
    return user, item


def history_mask(history: torch.Tensor) -> torch.Tensor:
    """history [B, L, item_slots] -> [B, L] bool, True where a behaviour is present."""
    return (history != PADDING_INDEX).any(dim=-1)


def pooled_history(item_embedding: FieldEmbedding, history: torch.Tensor) -> torch.Tensor:
    """history [B, L, S_i] -> masked mean of the embedded behaviours [B, D_c]."""
    return masked_mean(item_embedding(history), history_mask(history))


def gather_user_heads(user_heads: torch.Tensor, meta_index: torch.Tensor) -> torch.Tensor:
    """Pick each item's user representation by its meta index.

    user_heads [K, H_u, d] (one user, the serving case) or [N, K, H_u, d] (one user per item);
    meta_index [N] -> [N, H_u, d].
    """
    if user_heads.dim() == 3:
        return user_heads[meta_index]
    return user_heads[torch.arange(meta_index.shape[0]), meta_index]


@dataclass(frozen=True)
class TrainingOutput:
    """What a training step reads: logits [B] and the model's own weighted auxiliary loss
    (a scalar added to the trainer's BCE; None for models without one)."""

    logits: torch.Tensor
    auxiliary_loss: torch.Tensor | None = None


class PrerankModel(nn.Module, ABC):
    """`encode_user`, `encode_items`, `score`; `forward` is their composition, per (user, item).

    A decoupled model precomputes `encode_items` offline and serves `encode_user` once per
    request plus one batched `score`; a pairwise model puts the whole network in `score`: its
    encoders only look up and pool field embeddings (the "heads" are fields, K = 1).
    Training calls `training_forward`, which adds a model's auxiliary loss where it has one.
    """

    name: str
    """The registry name; an instance attribute, since one class can serve several names."""
    kind: ClassVar[ModelKind]

    @property
    @abstractmethod
    def num_meta_queries(self) -> int:
        """K: how many user representations `encode_user` returns per user."""

    @abstractmethod
    def encode_user(self, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """user_features [B, S_u], history [B, L, S_i] -> user_heads [B, K, H_u, d]."""

    @abstractmethod
    def encode_items(self, item_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """item_features [N, item_slots] -> (item_heads [N, H_v, d], meta_index [N] int64)."""

    @abstractmethod
    def score(
        self, user_heads: torch.Tensor, item_heads: torch.Tensor, meta_index: torch.Tensor
    ) -> torch.Tensor:
        """user_heads [K, H_u, d] or [N, K, H_u, d], item_heads [N, H_v, d], meta_index [N]
        -> logits [N]."""

    def forward(
        self, user_features: torch.Tensor, history: torch.Tensor, item_features: torch.Tensor
    ) -> torch.Tensor:
        """Logits [B] of B (user, item) pairs: encode both sides, then score."""
        item_heads, meta_index = self.encode_items(item_features)
        return self.score(self.encode_user(user_features, history), item_heads, meta_index)

    def training_forward(
        self,
        user_features: torch.Tensor,
        history: torch.Tensor,
        item_features: torch.Tensor,
        labels: torch.Tensor,
    ) -> TrainingOutput:
        """The trainer's one call per batch: logits [B] plus any auxiliary loss, computed from the
        same forward pass. Models with an auxiliary objective (DAT, IntTower) override it."""
        return TrainingOutput(self(user_features, history, item_features))

    def on_training_progress(self, fraction: float) -> None:
        """Called by the trainer before each step with the share of training done, in [0, 1]."""
