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
    meta_index [N] -> [N, H_u, d]. The serving case is an `index_select`, which exports as one
    ONNX Gather of whole rows (advanced indexing exports as a slower GatherND).
    """
    if user_heads.dim() == 3:
        return torch.index_select(user_heads, 0, meta_index)
    return user_heads[torch.arange(meta_index.shape[0]), meta_index]


@dataclass(frozen=True)
class PairHeads:
    """B (user, item) pairs encoded, as `score` takes them: user_heads [B, K, H_u, d],
    item_heads [B, H_v, d], meta_index [B] int64."""

    user_heads: torch.Tensor
    item_heads: torch.Tensor
    meta_index: torch.Tensor


@dataclass(frozen=True)
class MetaAssignment:
    """How a batch of N items picks its meta vectors, for precompute's FAISS check and its
    diagnostics: keys [N, D_c], similarity [N, K] = keys Q^T (the meta index is its argmax), and
    the cosine of each item's soft and hard query [N] (training uses the soft one, serving the
    hard one)."""

    keys: torch.Tensor
    similarity: torch.Tensor
    soft_hard_cosines: torch.Tensor


class PrerankModel(nn.Module, ABC):
    """`encode_user`, `encode_items`, `score`; `forward` is their composition, per (user, item).

    A decoupled model precomputes `encode_items` offline and serves `encode_user` once per
    request plus one batched `score`; a pairwise model puts the whole network in `score`: its
    encoders only look up and pool field embeddings (the "heads" are fields, K = 1).
    Training and evaluation score B (user, item) pairs through `encode_pairs` and `score`; ONNX
    export, precompute and serving call the three methods directly. The loss, auxiliary losses
    included, lives outside the model (offline_jobs/training/objective.py); `meta_matrix` and
    `meta_assignment` are what precompute needs of a model with meta vectors (FIT).
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

    def score_blocks(
        self, user_heads: torch.Tensor, item_heads: torch.Tensor, block_meta_index: torch.Tensor
    ) -> torch.Tensor:
        """`score` of candidates laid out in G blocks of R rows that share a meta index
        (`prerank_contract.blocks`): user_heads [K, H_u, d], item_heads [G, R, H_v, d],
        block_meta_index [G] -> logits [G, R]. The scorer graph's form. By default each row is
        scored by `score` with its block's meta index; a model whose scorer gains from the
        blocks (FIT's LSS) overrides it with the same function."""
        blocks, rows = item_heads.shape[:2]
        meta_index = block_meta_index[:, None].expand(blocks, rows).reshape(blocks * rows)
        flat = item_heads.reshape(blocks * rows, *item_heads.shape[2:])
        return self.score(user_heads, flat, meta_index).reshape(blocks, rows)

    def encode_pairs(
        self, user_features: torch.Tensor, history: torch.Tensor, item_features: torch.Tensor
    ) -> PairHeads:
        """B (user, item) pairs through `encode_items` and `encode_user`, ready for `score`.
        Only FIT overrides it, and its docstring says why."""
        item_heads, meta_index = self.encode_items(item_features)
        return PairHeads(self.encode_user(user_features, history), item_heads, meta_index)

    def forward(
        self, user_features: torch.Tensor, history: torch.Tensor, item_features: torch.Tensor
    ) -> torch.Tensor:
        """Logits [B] of B (user, item) pairs: `score` of `encode_pairs`."""
        pairs = self.encode_pairs(user_features, history, item_features)
        return self.score(pairs.user_heads, pairs.item_heads, pairs.meta_index)

    def meta_matrix(self) -> torch.Tensor | None:
        """The meta vectors Q [K, D_c] each item's meta index picks from; None for a model whose
        meta index is always 0 (every model but FIT)."""
        return None

    def meta_assignment(self, item_features: torch.Tensor) -> MetaAssignment | None:
        """item_features [N, S_i] -> how they pick their meta vectors; None exactly when
        `meta_matrix` is None."""
        return None

    def on_training_progress(self, fraction: float) -> None:
        """Called by the trainer before each step with the share of training done, in [0, 1]."""
