"""Late-interaction scorers: user heads [N, H_u, d] x item heads [N, H_v, d] -> logits [N]."""

from __future__ import annotations

import torch
from torch import nn

from prerank_model.layers.mlp import MLP

# The blocked LSS's column FC takes this many (candidate, r) rows per GEMM row (a block-diagonal
# weight): 2 x C = 16 outputs, the width of ONNX Runtime's float GEMM kernel, ran 0.5-0.7x the
# time of one row (C = 8 outputs) at 5,000 candidates; 4 and 8 rows ran slower than 2.
COLUMN_FC_ROWS = 2


def candidates_last(heads: torch.Tensor) -> torch.Tensor:
    """heads [N, H, d] -> [H, d, N]: one 2-D transpose of the [N, H * d] rows."""
    n, num_heads, head_dim = heads.shape
    return heads.reshape(n, num_heads * head_dim).T.reshape(num_heads, head_dim, n)


def candidates_last_similarity(user_heads: torch.Tensor, item_heads: torch.Tensor) -> torch.Tensor:
    """`similarity_matrix` as the exported graph computes it: both sides' heads transposed to
    [H, d, N], the H_u x H_v x d products one broadcast multiply over rows of d * N contiguous
    floats, and their sum over d a reduction of a middle axis."""
    users = candidates_last(user_heads).unsqueeze(1)  # [H_u, 1, d, N]
    items = candidates_last(item_heads).unsqueeze(0)  # [1, H_v, d, N]
    return (users * items).sum(dim=2)


def similarity_matrix(user_heads: torch.Tensor, item_heads: torch.Tensor) -> torch.Tensor:
    """S[i, j, n] = <user_heads[n, i], item_heads[n, j]>: [H_u, H_v, N], candidates last.

    One formula, two kernels. While exporting to ONNX it is `candidates_last_similarity`: a
    few long vector kernels in ONNX Runtime, which runs a matmul batched over the N candidates
    as one small GEMM call per candidate. In PyTorch (training, evaluation) it is that batched
    matmul, permuted to the same layout: PyTorch's fastest form, whose backward is two more
    matmuls where the broadcast multiply's would build two more [H_u, H_v, d, N] products. The
    export's parity check holds the graph to PyTorch; tests/prerank_model/layers/
    test_scorers.py checks each kernel against the definition.
    """
    if torch.compiler.is_exporting():
        return candidates_last_similarity(user_heads, item_heads)
    return torch.matmul(user_heads, item_heads.transpose(1, 2)).permute(1, 2, 0)


class LightweightSimilarityScorer(nn.Module):
    """FIT's LSS, following LITE's separable scorer (arXiv 2406.17968).

    S [H_u, H_v] per candidate -> row-wise FC + ReLU on each row (H_v -> R) -> column-wise FC +
    ReLU on each column (H_u -> C) -> flatten [R * C] -> linear -> logit.

    The candidates stay on the last axis throughout (see `similarity_matrix`), so each FC is a
    weight matrix times a [features, N]-shaped operand: the row FC one matmul per user head,
    the column FC and the output one GEMM each with their bias (the same function and
    parameters as the per-row nn.Linear layers, whose weights they read).
    """

    def __init__(self, user_heads: int, item_heads: int, row_dim: int, col_dim: int) -> None:
        super().__init__()
        self.row_fc = nn.Linear(item_heads, row_dim)
        self.col_fc = nn.Linear(user_heads, col_dim)
        self.output = nn.Linear(row_dim * col_dim, 1)

    def forward(self, user_heads: torch.Tensor, item_heads: torch.Tensor) -> torch.Tensor:
        n, num_user_heads = user_heads.shape[:2]
        row_dim, col_dim = self.row_fc.out_features, self.col_fc.out_features
        s = similarity_matrix(user_heads, item_heads)  # [H_u, H_v, N]
        rows = torch.relu(
            torch.matmul(self.row_fc.weight, s) + self.row_fc.bias[:, None]
        )  # [H_u, R, N]
        by_column = rows.reshape(num_user_heads, row_dim * n)  # [H_u, R * N]
        cols = torch.relu(
            torch.addmm(self.col_fc.bias[:, None], self.col_fc.weight, by_column)
        )  # [C, R * N]
        # output.weight reads the flattened [R, C] block row-major; here the rows are (c, r).
        weight = self.output.weight.view(row_dim, col_dim).T.reshape(1, col_dim * row_dim)
        logits = torch.addmm(
            self.output.bias[:, None], weight, cols.reshape(col_dim * row_dim, n)
        )  # [1, N]
        return logits.reshape(n)

    def score_blocks(self, user_heads: torch.Tensor, item_heads: torch.Tensor) -> torch.Tensor:
        """`forward` of G blocks of R candidates that share their user heads: user_heads
        [G, H_u, d] (one per block), item_heads [G, R, H_v, d] -> logits [G, R].

        The serving form (the scorer graph's): each block's similarities are one GEMM,
        [H_u, d] x [d, R * H_v], rather than a [H_u, d] x [d, H_v] product per candidate; the
        row FC is one GEMM over all candidates through kron(W_row^T, I_{H_u}) (the row FC of
        each user head at once), the column FC one GEMM over (candidate, r) rows taken in
        pairs (`COLUMN_FC_ROWS`), the output one GEMM of a single row by the transposed
        columns. The block-diagonal weights multiply zeros, but they make the GEMMs wide
        enough for ONNX Runtime's kernels.
        """
        blocks, rows, num_item_heads, head_dim = item_heads.shape
        num_user_heads = user_heads.shape[1]
        row_dim, col_dim = self.row_fc.out_features, self.col_fc.out_features
        candidates = blocks * rows
        s = torch.bmm(
            user_heads, item_heads.reshape(blocks, rows * num_item_heads, head_dim).transpose(1, 2)
        )  # [G, H_u, R * H_v]: R * H_v outputs wide (H_u wide ran 1.9x slower)
        s = s.reshape(blocks, num_user_heads, rows, num_item_heads).permute(0, 2, 3, 1)  # (j, i)
        row_weight = block_diagonal(self.row_fc.weight.T, num_user_heads, inner=True)
        per_row = torch.relu(
            torch.addmm(
                self.row_fc.bias.repeat_interleave(num_user_heads),
                s.reshape(candidates, num_item_heads * num_user_heads),
                row_weight,
            )
        )  # [G R, R_dim * H_u], (r, i)
        pair = COLUMN_FC_ROWS if (candidates * row_dim) % COLUMN_FC_ROWS == 0 else 1
        cols = torch.relu(
            torch.addmm(
                self.col_fc.bias.repeat(pair),
                per_row.reshape(candidates * row_dim // pair, pair * num_user_heads),
                block_diagonal(self.col_fc.weight.T, pair, inner=False),
            )
        )  # [G R R_dim, C] in pairs of rows; output.weight reads (r, c) row-major, as these are
        logits = torch.addmm(
            self.output.bias[:, None],
            self.output.weight,
            cols.reshape(candidates, row_dim * col_dim).T,
        )  # [1, G R]: one row by B transposed, where [G R, R C] x [R C, 1] ran 3x slower
        return logits.reshape(blocks, rows)


def block_diagonal(weight: torch.Tensor, copies: int, inner: bool) -> torch.Tensor:
    """weight [a, b] -> kron(weight, I_copies) (`inner`) or kron(I_copies, weight), [copies a,
    copies b]. Written as a broadcast product: torch.kron does not export."""
    eye = torch.eye(copies, dtype=weight.dtype)
    if inner:
        product = weight[:, None, :, None] * eye[None, :, None, :]
    else:
        product = eye[:, None, :, None] * weight[None, :, None, :]
    return product.reshape(weight.shape[0] * copies, weight.shape[1] * copies)


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
        s = similarity_matrix(user_heads, item_heads)  # [H_u, H_v, N]
        return s.amax(dim=1).sum(dim=0)


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
