"""FieldEmbedding: field order, mean pooling of multi-slot fields, the zero padding row."""

from __future__ import annotations

import pytest
import torch

from prerank_contract.features import PADDING_INDEX, FieldSpec
from prerank_model.layers.embedding import FieldEmbedding

DIM = 4
FIELDS = (
    FieldSpec(name="item_id", source="item", vocab_size=9),
    FieldSpec(name="genres", source="item", vocab_size=7, slots=3),
    FieldSpec(name="year", source="item", vocab_size=5),
)
ROWS = torch.tensor(
    [
        [3, 2, 0, 5, 1],  # genres {2, 5} plus one padding slot
        [8, 3, 3, 1, 4],  # a repeated genre counts twice
        [0, 0, 0, 0, 0],  # everything missing
        [1, 6, 6, 6, 0],
    ]
)


@pytest.fixture
def embedding() -> FieldEmbedding:
    torch.manual_seed(0)
    return FieldEmbedding(FIELDS, DIM, init_std=None)


def test_init_std_sets_the_rows_spread_and_keeps_padding_at_zero() -> None:
    torch.manual_seed(0)
    wide = FieldEmbedding(
        (FieldSpec(name="id", source="item", vocab_size=5001, slots=1),), 32, 0.01
    )
    table = wide.tables[0].weight.detach()
    assert torch.all(table[PADDING_INDEX] == 0)
    assert abs(float(table[1:].std()) - 0.01) < 0.001


def test_output_dim_is_one_block_per_field(embedding: FieldEmbedding) -> None:
    assert embedding.output_dim == DIM * len(FIELDS)
    assert embedding(ROWS).shape == (ROWS.shape[0], embedding.output_dim)
    assert embedding(ROWS.view(2, 2, -1)).shape == (2, 2, embedding.output_dim)


@torch.no_grad()
def test_single_slot_fields_are_table_rows_concatenated_in_field_order(
    embedding: FieldEmbedding,
) -> None:
    out = embedding(ROWS)
    ids, years = embedding.tables[0].weight, embedding.tables[2].weight
    torch.testing.assert_close(out[:, :DIM], ids[ROWS[:, 0]])
    torch.testing.assert_close(out[:, 2 * DIM :], years[ROWS[:, 4]])


@torch.no_grad()
def test_multi_slot_field_is_the_mean_of_its_non_padding_slots(embedding: FieldEmbedding) -> None:
    genres = embedding.tables[1].weight
    out = embedding(ROWS)[:, DIM : 2 * DIM]
    torch.testing.assert_close(out[0], (genres[2] + genres[5]) / 2)
    torch.testing.assert_close(out[1], (2 * genres[3] + genres[1]) / 3)
    torch.testing.assert_close(out[3], genres[6])
    assert torch.count_nonzero(out[2]) == 0


def test_padding_index_embeds_to_zero_and_gets_no_gradient(embedding: FieldEmbedding) -> None:
    out = embedding(ROWS)
    assert torch.count_nonzero(out[2]) == 0
    assert torch.count_nonzero(out[0]) > 0
    out.sum().backward()
    for table in embedding.tables:
        assert torch.count_nonzero(table.weight[PADDING_INDEX]) == 0
        assert torch.count_nonzero(table.weight.grad[PADDING_INDEX]) == 0


def test_training_routes_match_the_plain_lookup_in_values_and_gradients() -> None:
    """Training pools a small-vocabulary multi-slot field (7 <= 3 slots x 4) through its
    slot-weight matrix, a large one (50 > 2 x 4) by lookup and mean as eval does everywhere.
    Same values and table gradients, none for the padding row."""
    fields = (*FIELDS, FieldSpec(name="tags", source="item", vocab_size=50, slots=2))
    torch.manual_seed(0)
    embedding = FieldEmbedding(fields, DIM, init_std=None).double()
    more = torch.tensor([[2, 4, 0, 0, 3], [5, 0, 0, 6, 1], [0, 1, 2, 3, 0], [6, 0, 0, 0, 2]])
    tags = torch.tensor([[7, 0], [49, 49], [0, 0], [0, 13], [1, 2], [0, 0], [3, 3], [0, 40]])
    rows = torch.cat([torch.cat([ROWS, more]), tags], dim=1).view(2, 4, -1)  # [B, L, slots]
    upstream = torch.randn(2, 4, embedding.output_dim, dtype=torch.float64)

    def values_and_gradients(training: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        embedding.train(training)
        embedding.zero_grad(set_to_none=True)
        out = embedding(rows)
        (out * upstream).sum().backward()
        return out.detach(), [table.weight.grad for table in embedding.tables]

    trained, trained_grads = values_and_gradients(True)
    plain, plain_grads = values_and_gradients(False)
    torch.testing.assert_close(trained, plain, rtol=0, atol=1e-12)
    for trained_grad, plain_grad in zip(trained_grads, plain_grads, strict=True):
        assert torch.count_nonzero(plain_grad) > 0
        torch.testing.assert_close(trained_grad, plain_grad, rtol=0, atol=1e-12)
        assert torch.count_nonzero(trained_grad[PADDING_INDEX]) == 0


@torch.no_grad()
@pytest.mark.parametrize(
    "fields",
    [FIELDS, tuple(spec for spec in FIELDS if spec.slots == 1)],
    ids=["with a multi-slot field", "single-slot fields"],
)
def test_the_export_form_looks_up_one_stacked_table_with_the_same_values(
    fields: tuple[FieldSpec, ...],
) -> None:
    torch.manual_seed(0)
    embedding = FieldEmbedding(fields, DIM, init_std=None).eval()
    columns = [0, 1, 2, 3, 4] if len(fields) == len(FIELDS) else [0, 4]
    rows = ROWS[:, columns]
    torch.testing.assert_close(embedding._stacked_lookup(rows), embedding(rows), rtol=0, atol=0)
    torch.testing.assert_close(
        embedding._stacked_lookup(rows.view(2, 2, -1)), embedding(rows.view(2, 2, -1))
    )
