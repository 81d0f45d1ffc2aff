"""Field embeddings: one table per categorical field, concatenated in schema order."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prerank_contract.features import PADDING_INDEX, FieldSpec


class FieldEmbedding(nn.Module):
    """Embeds `[..., slots]` int64 feature rows into `[..., F * dim]` (`unflatten` gives fields).

    A multi-slot field is the mean of its non-padding slots (zeros when all are padding);
    index 0 of every table is a fixed zero vector. Rows start as torch's N(0, 1), or as
    N(0, init_std^2) when `init_std` is given (docs/MODEL.md has what each does to accuracy).

    Training (train mode with grad enabled) computes the same function by routes whose backward
    is cheaper on CPU than `nn.Embedding`'s (`embedding_dense_backward`), which took most of a
    Two-Tower training step on ML-1M: a single-slot field gathers rows with `RowGather`
    (backward: one `index_add_`), and a multi-slot field whose vocabulary is no larger than its
    gathered block (V <= slots * dim) is a [..., V] matrix of slot weights times the table (its
    backward: one matmul). Eval, export and serving run the plain lookup-and-mean.
    """

    def __init__(
        self, fields: tuple[FieldSpec, ...], dim: int, init_std: float | None = None
    ) -> None:
        super().__init__()
        self.slot_counts = [spec.slots for spec in fields]
        self.tables = nn.ModuleList(
            nn.Embedding(spec.vocab_size, dim, padding_idx=PADDING_INDEX) for spec in fields
        )
        if init_std is not None:
            for table in self.tables:
                assert isinstance(table, nn.Embedding)
                nn.init.normal_(table.weight, std=init_std)
                with torch.no_grad():
                    table.weight[PADDING_INDEX].zero_()
        self.num_fields, self.dim = len(fields), dim
        self.output_dim = dim * len(fields)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        training = self.training and torch.is_grad_enabled()
        parts = []
        for table, column in zip(
            self.tables, torch.split(features, self.slot_counts, -1), strict=True
        ):
            assert isinstance(table, nn.Embedding)
            slots = column.shape[-1]
            if training and slots > 1 and table.num_embeddings <= slots * self.dim:
                weights = _slot_weights(column, table.num_embeddings, table.weight.dtype)
                parts.append(weights @ table.weight)
                continue
            # [..., slots, dim]
            vectors = RowGather.apply(table.weight, column) if training else table(column)
            if slots == 1:
                parts.append(vectors.squeeze(-2))
                continue
            present = (column != PADDING_INDEX).unsqueeze(-1).to(vectors.dtype)
            count = present.sum(-2).clamp_min(1.0)
            parts.append((vectors * present).sum(-2) / count)
        return torch.cat(parts, dim=-1)


def _slot_weights(column: torch.Tensor, vocab_size: int, dtype: torch.dtype) -> torch.Tensor:
    """column [..., slots] -> [..., V]: each non-padding slot adds 1 / (its row's count) at its
    index, so (weights @ table) is the mean of the row's non-padding slots (zeros when none)."""
    present = (column != PADDING_INDEX).to(dtype)
    share = present / present.sum(-1, keepdim=True).clamp_min(1.0)
    weights = torch.zeros(*column.shape[:-1], vocab_size, dtype=dtype)
    return weights.scatter_add_(-1, column, share)


class RowGather(torch.autograd.Function):
    """table [V, D], indices [...] int64 -> table[indices] [..., D], whose backward adds the
    output's gradient into a [V, D] zeros with one `index_add_` (about 6x faster on CPU than
    `embedding_dense_backward` for a batch of histories) and gives the padding row none, as
    `nn.Embedding(padding_idx=0)` does."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(indices)
        ctx.num_rows = table.shape[0]
        return table.index_select(0, indices.reshape(-1)).view(*indices.shape, table.shape[1])

    @staticmethod
    def backward(ctx: Any, grad_rows: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (indices,) = ctx.saved_tensors
        flat = grad_rows.reshape(-1, grad_rows.shape[-1])
        grad_table = flat.new_zeros(ctx.num_rows, flat.shape[1])
        grad_table.index_add_(0, indices.reshape(-1), flat)
        grad_table[PADDING_INDEX] = 0.0
        return grad_table, None
