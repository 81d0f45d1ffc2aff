"""Field embeddings: one table per categorical field, concatenated in schema order."""

from __future__ import annotations

import torch
from torch import nn

from prerank_contract.features import PADDING_INDEX, FieldSpec


class FieldEmbedding(nn.Module):
    """Embeds `[..., slots]` int64 feature rows into `[..., F * dim]` (`unflatten` gives fields).

    A multi-slot field is the mean of its non-padding slots (zeros when all are padding);
    index 0 of every table is a fixed zero vector. Rows start as torch's N(0, 1), or as
    N(0, init_std^2) when `init_std` is given (docs/MODEL.md has what each does to accuracy).

    Training (train mode with grad enabled) pools a multi-slot field whose vocabulary is no
    larger than its gathered block (V <= slots * dim, ML-1M's genres) as a [..., V] matrix of
    slot weights times the table: the same function, whose backward is one matmul instead of
    `nn.Embedding`'s `embedding_dense_backward` over every slot, which is a large share of a
    Two-Tower training step on the CPU. Eval, export and serving run the lookup-and-mean.
    """

    def __init__(self, fields: tuple[FieldSpec, ...], dim: int, init_std: float | None) -> None:
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
            vectors = table(column)  # [..., slots, dim]
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
