"""Late-interaction scorers: user heads [N, H_u, d] x item heads [N, H_v, d] -> logits [N]."""

from __future__ import annotations

import torch
from torch import nn

from prerank_model.layers.mlp import MLP


def similarity_matrix(user_heads: torch.Tensor, item_heads: torch.Tensor) -> torch.Tensor:
    """S[n, i, j] = <user_heads[n, i], item_heads[n, j]>: [N, H_u, H_v] (one batched matmul)."""
    return torch.matmul(user_heads, item_heads.transpose(1, 2))


class LightweightSimilarityScorer(nn.Module):
    """FIT's LSS, following LITE's separable scorer (arXiv 2406.17968).

    S [N, H_u, H_v] -> row-wise FC + ReLU on each row (H_v -> R) -> column-wise FC + ReLU on each
    column (H_u -> C) -> flatten [N, R * C] -> linear -> logit.

    Each FC runs on its rows flattened to 2-D ([N * H_u, H_v], then [N * R, H_u]), so an exported
    graph has one GEMM with its bias per layer rather than a batched matmul and a broadcast add,
    which ONNX Runtime runs faster (the same function and parameters).
    """

    def __init__(self, user_heads: int, item_heads: int, row_dim: int, col_dim: int) -> None:
        super().__init__()
        self.row_fc = nn.Linear(item_heads, row_dim)
        self.col_fc = nn.Linear(user_heads, col_dim)
        self.output = nn.Linear(row_dim * col_dim, 1)

    def forward(self, user_heads: torch.Tensor, item_heads: torch.Tensor) -> torch.Tensor:
        n, num_user_heads, num_item_heads = (
            user_heads.shape[0],
            user_heads.shape[1],
            item_heads.shape[1],
        )
        s = similarity_matrix(user_heads, item_heads)  # [N, H_u, H_v]
        rows = torch.relu(self.row_fc(s.reshape(-1, num_item_heads)))  # [N * H_u, R]
        by_column = rows.view(n, num_user_heads, -1).transpose(1, 2)  # [N, R, H_u]
        cols = torch.relu(self.col_fc(by_column.reshape(-1, num_user_heads)))  # [N * R, C]
        return self.output(cols.view(n, -1)).squeeze(-1)  # [N, R * C] -> [N]


class DotProductScorer(nn.Module):
    """The Two-Tower output: the dot product of single heads, [N, 1, d] x [N, 1, d] -> [N].

    Written as <sum_i u_i, sum_j v_j> (with one head each, <u, v>): an elementwise product and a
    sum, not a batched matmul of 1 x 1 results."""

    def forward(self, user_heads: torch.Tensor, item_heads: torch.Tensor) -> torch.Tensor:
        user = user_heads.sum(dim=1) if user_heads.shape[1] > 1 else user_heads.squeeze(1)
        item = item_heads.sum(dim=1) if item_heads.shape[1] > 1 else item_heads.squeeze(1)
        return (user * item).sum(dim=-1)  # a sum over one head is a copy in ONNX Runtime


class HeadwiseDotScorer(nn.Module):
    """sum_h <u_h, v_h>: the dot product of the flattened heads, [N, H, d] x [N, H, d] -> [N].

    FIT's "w/o LSS" ablation: the Two-Tower output over FIT's heads (needs H_u = H_v).
    """

    def forward(self, user_heads: torch.Tensor, item_heads: torch.Tensor) -> torch.Tensor:
        return (user_heads * item_heads).sum(dim=(1, 2))


class SumMaxScorer(nn.Module):
    """IntTower's sum-max: sum over user heads of the max over item heads of S -> [N].

    With `cosine=True` the heads are L2-normalised first (RankTower's max-similarity layer).
    Parameter-free.
    """

    def __init__(self, cosine: bool = False) -> None:
        super().__init__()
        self.cosine = cosine

    def forward(self, user_heads: torch.Tensor, item_heads: torch.Tensor) -> torch.Tensor:
        if self.cosine:
            user_heads = nn.functional.normalize(user_heads, dim=-1)
            item_heads = nn.functional.normalize(item_heads, dim=-1)
        s = similarity_matrix(user_heads, item_heads)  # [N, H_u, H_v]
        return s.amax(dim=-1).sum(dim=-1)


class ConcatMLPScorer(nn.Module):
    """An MLP over [flatten(user heads), flatten(item heads)] -> logit [N] (FIT's "w FC")."""

    def __init__(
        self, user_heads: int, item_heads: int, head_dim: int, hidden: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.mlp = MLP((user_heads + item_heads) * head_dim, hidden, 1, dropout=0.0)

    def forward(self, user_heads: torch.Tensor, item_heads: torch.Tensor) -> torch.Tensor:
        pair = torch.cat([user_heads.flatten(1), item_heads.flatten(1)], dim=-1)
        return self.mlp(pair).squeeze(-1)
