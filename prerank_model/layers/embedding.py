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
    Two-Tower training step on the CPU. Eval, export and serving run the lookup-and-mean; the
    exported graph looks every slot up in one table (`_stacked_lookup`).
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
        # each slot's row offset in the fields' tables stacked (export's single lookup)
        starts = [0]
        for spec in fields[:-1]:
            starts.append(starts[-1] + spec.vocab_size)
        offsets = [
            start for start, spec in zip(starts, fields, strict=True) for _ in range(spec.slots)
        ]
        self.slot_offsets: torch.Tensor
        self.register_buffer(
            "slot_offsets", torch.tensor(offsets, dtype=torch.long), persistent=False
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting():
            return self._stacked_lookup(features)
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
            parts.append(_pooled(table(column), column))
        return torch.cat(parts, dim=-1)

    def _stacked_lookup(self, features: torch.Tensor) -> torch.Tensor:
        """`forward` as the exported graph computes it: every slot's row gathered at once from
        the tables stacked into one (a constant ONNX Runtime folds at load), instead of a
        split, a gather and a squeeze per field and their concatenation: in FIT's user tower,
        fewer nodes cost 5-7 us of its 40-60 (`docs/benchmarks/speedups.md`). The same values:
        a table's padding row is a zero row at its offset."""
        stacked = torch.cat(
            [table.weight for table in self.tables if isinstance(table, nn.Embedding)]
        )
        vectors = stacked[features + self.slot_offsets]  # [..., slots, dim]
        if all(slots == 1 for slots in self.slot_counts):
            return vectors.flatten(-2)
        parts = []
        for field_vectors, column in zip(
            torch.split(vectors, self.slot_counts, -2),
            torch.split(features, self.slot_counts, -1),
            strict=True,
        ):
            parts.append(_pooled(field_vectors, column))
        return torch.cat(parts, dim=-1)


def _pooled(vectors: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """One field's slot vectors [..., slots, dim] and ids [..., slots] -> [..., dim]: the vector
    of a single slot, else the mean of the non-padding slots (zeros when all are padding)."""
    if column.shape[-1] == 1:
        return vectors.squeeze(-2)
    present = (column != PADDING_INDEX).unsqueeze(-1).to(vectors.dtype)
    count = present.sum(-2).clamp_min(1.0)
    return (vectors * present).sum(-2) / count


def _slot_weights(column: torch.Tensor, vocab_size: int, dtype: torch.dtype) -> torch.Tensor:
    """column [..., slots] -> [..., V]: each non-padding slot adds 1 / (its row's count) at its
    index, so (weights @ table) is the mean of the row's non-padding slots (zeros when none)."""
    present = (column != PADDING_INDEX).to(dtype)
    share = present / present.sum(-1, keepdim=True).clamp_min(1.0)
    weights = torch.zeros(*column.shape[:-1], vocab_size, dtype=dtype)
    return weights.scatter_add_(-1, column, share)
