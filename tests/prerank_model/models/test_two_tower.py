"""Two-Tower: one user vector, one item vector, and a dot product between them."""

from __future__ import annotations

import pytest
import torch

from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.settings import JobSettings
from offline_jobs.training.loop import batch_tensors, new_model
from prerank_contract.features import PADDING_INDEX
from prerank_model.models.base import PrerankModel

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@pytest.fixture(scope="module")
def two_tower(tiny_data: InteractionData, job_settings: JobSettings) -> PrerankModel:
    return new_model("two_tower", tiny_data.schema, job_settings.model, seed=3).eval()


@pytest.fixture(scope="module")
def pairs(tiny_data: InteractionData) -> Tensors:
    return batch_tensors(make_batch(tiny_data, tiny_data.splits["test"][:40]))


@torch.no_grad()
def test_shapes_are_a_single_query_and_head(
    two_tower: PrerankModel, pairs: Tensors, job_settings: JobSettings
) -> None:
    user_features, history, item_features = pairs
    dim = job_settings.model.item_heads * job_settings.model.head_dim
    assert two_tower.num_meta_queries == 1
    assert two_tower.encode_user(user_features, history).shape == (40, 1, 1, dim)
    item_heads, meta_index = two_tower.encode_items(item_features)
    assert item_heads.shape == (40, 1, dim)
    assert meta_index.dtype == torch.int64
    assert torch.count_nonzero(meta_index) == 0


@torch.no_grad()
def test_logit_is_the_dot_product_of_user_and_item_vectors(
    two_tower: PrerankModel, pairs: Tensors
) -> None:
    user_features, history, item_features = pairs
    users = two_tower.encode_user(user_features, history)[:, 0, 0]  # [B, D]
    items = two_tower.encode_items(item_features)[0][:, 0]  # [B, D]
    expected = torch.stack([users[n] @ items[n] for n in range(users.shape[0])])
    torch.testing.assert_close(two_tower(*pairs), expected, atol=1e-5, rtol=0)


@torch.no_grad()
def test_history_padding_changes_nothing(two_tower: PrerankModel, pairs: Tensors) -> None:
    user_features, history, _ = pairs
    padding = torch.full((history.shape[0], 5, history.shape[2]), PADDING_INDEX)
    torch.testing.assert_close(
        two_tower.encode_user(user_features, torch.cat([padding, history], 1)),
        two_tower.encode_user(user_features, history),
        atol=1e-6,
        rtol=0,
    )
    # Dropping the real behaviours does change it: the history is read at all.
    assert not torch.allclose(
        two_tower.encode_user(user_features, torch.zeros_like(history)),
        two_tower.encode_user(user_features, history),
    )


@torch.no_grad()
def test_forward_equals_the_serving_composition(two_tower: PrerankModel, pairs: Tensors) -> None:
    user_features, history, item_features = pairs
    user_heads = two_tower.encode_user(user_features, history)
    item_heads, meta_index = two_tower.encode_items(item_features)
    served = torch.stack(
        [
            two_tower.score(user_heads[n], item_heads[n : n + 1], meta_index[n : n + 1])[0]
            for n in range(user_heads.shape[0])
        ]
    )
    torch.testing.assert_close(served, two_tower(*pairs), atol=1e-5, rtol=0)
