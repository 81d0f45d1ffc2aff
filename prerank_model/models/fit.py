"""FIT (Xiong et al., SIGIR'25): Meta Query Module + DIN + Lightweight Similarity Scorer."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from prerank_contract.features import FeatureSchema
from prerank_contract.manifest import ModelKind
from prerank_model.config import FITVariant, ModelConfig
from prerank_model.layers.din import DINAttention
from prerank_model.layers.meta_query import MetaQueryModule
from prerank_model.layers.mlp import MLP
from prerank_model.layers.scorers import (
    ConcatMLPScorer,
    HeadwiseDotScorer,
    LightweightSimilarityScorer,
    SumMaxScorer,
)
from prerank_model.models.base import (
    MetaAssignment,
    PairHeads,
    PrerankModel,
    field_embeddings,
    gather_user_heads,
    history_mask,
)


class FIT(PrerankModel):
    """Learnable Fully Interacted Two-Tower model.

    Item key e_c = concatenated item-field embeddings [N, D_c]. Early interaction: a meta query
    (soft in training, hard in eval) attends over the behaviour sequence with DIN; the user tower
    MLP over [profile, DIN interest, query] gives H_u heads of size d. The item tower gives H_v
    heads. Late interaction: LSS over the H_u x H_v head similarities.

    Serving runs the user tower once with every row of Q* (`encode_user` -> [B, K, H_u, d]) and
    each item picks its row by its stored meta index, which equals the eval-mode per-pair path
    (`encode_pairs`).

    The paper's ablations are `variant`s of this one class (FIT_VARIANTS): "w/o MQM" keeps one
    meta vector (K = 1: the DIN query is the same for every item, one user representation);
    "w/o LSS" scores sum_h <u_h, v_h> (the user tower then emits H_v heads so they pair up);
    "w SumMax" scores with IntTower's sum-max; "w FC" with an MLP over the concatenated heads.
    """

    name = "fit"
    kind: ClassVar[ModelKind] = "decoupled"

    def __init__(
        self, schema: FeatureSchema, config: ModelConfig, variant: FITVariant | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.variant = variant or FITVariant()
        self.name = self.variant.name
        self.num_queries = config.num_meta_queries if self.variant.meta_queries else 1
        self.num_user_heads = (
            config.item_heads if self.variant.scorer == "dot" else config.user_heads
        )
        self.user_embedding, self.item_embedding = field_embeddings(schema, config)
        key_dim = self.item_embedding.output_dim
        self.meta_query = MetaQueryModule(self.num_queries, key_dim, config.tau_start)
        self.din = DINAttention(key_dim, config.din_hidden)
        self.user_tower = MLP(
            self.user_embedding.output_dim + 2 * key_dim,
            config.tower_hidden,
            self.num_user_heads * config.head_dim,
            config.dropout,
        )
        self.item_tower = MLP(
            key_dim, config.tower_hidden, config.item_heads * config.head_dim, config.dropout
        )
        self.scorer = self._make_scorer()

    def _make_scorer(self) -> nn.Module:
        """LSS, or the scorer that replaces it in an ablation: [N, H_u, d] x [N, H_v, d] -> [N]."""
        config, kind = self.config, self.variant.scorer
        if kind == "dot":
            return HeadwiseDotScorer()
        if kind == "sum_max":
            return SumMaxScorer()
        if kind == "fc":
            return ConcatMLPScorer(
                self.num_user_heads, config.item_heads, config.head_dim, config.fc_scorer_hidden
            )
        return LightweightSimilarityScorer(
            self.num_user_heads, config.item_heads, config.lss_row_dim, config.lss_col_dim
        )

    @property
    def num_meta_queries(self) -> int:
        return self.num_queries

    def user_heads_for_queries(
        self, user_features: torch.Tensor, history: torch.Tensor, queries: torch.Tensor
    ) -> torch.Tensor:
        """The user tower under given meta queries: queries [B, Q, D_c] -> [B, Q, H_u, d]."""
        behaviours = self.item_embedding(history)  # [B, L, D_c]
        interest = self.din(queries, behaviours, history_mask(history))  # [B, Q, D_c]
        profile = self.user_embedding(user_features).unsqueeze(1)  # [B, 1, D_u]
        if torch.compiler.is_exporting():
            # the serving graph: the profile's share of the first layer once, not once per query
            heads = self.user_tower.forward_parts([profile, interest, queries])
        else:
            inputs = [profile.expand(-1, queries.shape[1], -1), interest, queries]
            heads = self.user_tower(torch.cat(inputs, dim=-1))
        return heads.view(*queries.shape[:2], self.num_user_heads, self.config.head_dim)

    def encode_user(self, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        query_group = self.meta_query.query_group()  # [K, D_c]
        queries = query_group.unsqueeze(0).expand(user_features.shape[0], -1, -1)
        return self.user_heads_for_queries(user_features, history, queries)

    def encode_items(self, item_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys = self.item_embedding(item_features)
        heads = self.item_tower(keys).view(-1, self.config.item_heads, self.config.head_dim)
        return heads, self.meta_query.meta_index(keys)

    def score(
        self, user_heads: torch.Tensor, item_heads: torch.Tensor, meta_index: torch.Tensor
    ) -> torch.Tensor:
        return self.scorer(gather_user_heads(user_heads, meta_index), item_heads)

    def score_blocks(
        self, user_heads: torch.Tensor, item_heads: torch.Tensor, block_meta_index: torch.Tensor
    ) -> torch.Tensor:
        """LSS takes the blocks as they are: each block's user heads once, its similarities one
        GEMM (`LightweightSimilarityScorer.score_blocks`); the ablations' scorers score rows."""
        if isinstance(self.scorer, LightweightSimilarityScorer):
            block_users = gather_user_heads(user_heads, block_meta_index)  # [G, H_u, d]
            return self.scorer.score_blocks(block_users, item_heads)
        return super().score_blocks(user_heads, item_heads, block_meta_index)

    def encode_pairs(
        self, user_features: torch.Tensor, history: torch.Tensor, item_features: torch.Tensor
    ) -> PairHeads:
        """Per pair, only the item's own meta query runs through DIN and the user tower:
        user_heads [B, 1, H_u, d] and meta_index all 0, so `score` takes that one row.

        Not `encode_user` + `encode_items`, because in training the query is the soft one,
        softmax(s / tau) Q*: a mix of Q*'s rows that depends on the item, hence none of the K
        rows `encode_user` computes without seeing it. In eval the query is the hard row
        Q*[meta_index], the same function as the composition (tests/prerank_model/models/
        test_fit.py checks it pair by pair) with DIN and the user tower run once per pair, not K
        times.
        """
        keys = self.item_embedding(item_features)
        queries = self.meta_query.query(keys).unsqueeze(1)  # [B, 1, D_c]
        user_heads = self.user_heads_for_queries(user_features, history, queries)
        item_heads = self.item_tower(keys).view(-1, self.config.item_heads, self.config.head_dim)
        meta_index = torch.zeros(item_features.shape[0], dtype=torch.int64)
        return PairHeads(user_heads, item_heads, meta_index)

    def on_training_progress(self, fraction: float) -> None:
        """Anneal tau linearly from tau_start to tau_floor over `anneal_fraction`, then hold."""
        config = self.config
        ramp = min(fraction / config.anneal_fraction, 1.0)
        tau = config.tau_start + (config.tau_floor - config.tau_start) * ramp
        self.meta_query.set_temperature(tau)

    def meta_matrix(self) -> torch.Tensor:
        return self.meta_query.meta_matrix.detach()

    @torch.no_grad()
    def meta_assignment(self, item_features: torch.Tensor) -> MetaAssignment:
        keys = self.item_embedding(item_features)
        soft = self.meta_query.soft_query(keys)
        hard = self.meta_query.hard_query(keys)
        return MetaAssignment(
            keys=keys,
            similarity=self.meta_query.similarity(keys),
            soft_hard_cosines=nn.functional.cosine_similarity(soft, hard, dim=-1),
        )


FIT_VARIANTS: tuple[FITVariant, ...] = (
    FITVariant(),
    FITVariant(name="fit_no_mqm", meta_queries=False),
    FITVariant(name="fit_no_lss", scorer="dot"),
    FITVariant(name="fit_summax", scorer="sum_max"),
    FITVariant(name="fit_fc", scorer="fc"),
)
"""FIT and the paper's four ablations, each a registry name."""
