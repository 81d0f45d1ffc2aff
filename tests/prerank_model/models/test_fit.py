"""FIT: the three-method interface, train/serve equivalence, and the temperature schedule."""

from __future__ import annotations

import copy

import pytest
import torch

from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.settings import JobSettings
from offline_jobs.training.loop import batch_tensors, new_model
from prerank_model.config import ModelConfig
from prerank_model.models.base import PrerankModel
from prerank_model.models.fit import FIT

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@pytest.fixture(scope="module")
def test_pairs(tiny_data: InteractionData) -> Tensors:
    """(user_features, history, item_features) of every test-split sample."""
    return batch_tensors(make_batch(tiny_data, tiny_data.splits["test"]))


@torch.no_grad()
def test_encode_user_and_encode_items_shapes(
    trained_fit: PrerankModel, test_pairs: Tensors, job_settings: JobSettings
) -> None:
    config = job_settings.model
    user_features, history, item_features = test_pairs
    batch = user_features.shape[0]
    user_heads = trained_fit.encode_user(user_features, history)
    assert user_heads.shape == (batch, config.num_meta_queries, config.user_heads, config.head_dim)
    item_heads, meta_index = trained_fit.encode_items(item_features)
    assert item_heads.shape == (batch, config.item_heads, config.head_dim)
    assert meta_index.shape == (batch,)
    assert meta_index.dtype == torch.int64
    assert int(meta_index.min()) >= 0
    assert int(meta_index.max()) < config.num_meta_queries


@torch.no_grad()
def test_score_accepts_one_users_heads_or_one_per_item(
    trained_fit: PrerankModel, test_pairs: Tensors
) -> None:
    user_features, history, item_features = test_pairs
    user_heads = trained_fit.encode_user(user_features[:1], history[:1])[0]  # [K, H_u, d]
    item_heads, meta_index = trained_fit.encode_items(item_features)
    one_user = trained_fit.score(user_heads, item_heads, meta_index)
    assert one_user.shape == (item_features.shape[0],)
    per_item = user_heads.expand(item_features.shape[0], *user_heads.shape)  # [N, K, H_u, d]
    torch.testing.assert_close(trained_fit.score(per_item, item_heads, meta_index), one_user)


@torch.no_grad()
def test_eval_forward_equals_the_serving_composition_per_pair(
    trained_fit: PrerankModel, test_pairs: Tensors
) -> None:
    user_features, history, item_features = test_pairs
    assert user_features.shape[0] >= 200
    trained_fit.eval()
    trained = trained_fit(user_features, history, item_features)
    user_heads = trained_fit.encode_user(user_features, history)  # all K queries
    item_heads, meta_index = trained_fit.encode_items(item_features)
    assert torch.unique(meta_index).numel() > 1, "the gather must matter for this test"
    served = torch.stack(
        [
            trained_fit.score(user_heads[n], item_heads[n : n + 1], meta_index[n : n + 1])[0]
            for n in range(user_features.shape[0])
        ]
    )
    torch.testing.assert_close(served, trained, atol=1e-5, rtol=0)
    wrong_row = (meta_index + 1) % trained_fit.num_meta_queries
    assert not torch.allclose(
        trained_fit.score(user_heads, item_heads, wrong_row), trained, atol=1e-3
    )


@torch.no_grad()
def test_training_mode_uses_the_soft_query(trained_fit: PrerankModel, test_pairs: Tensors) -> None:
    model = copy.deepcopy(trained_fit)
    assert isinstance(model, FIT)
    model.meta_query.temperature.fill_(1.0)
    eval_logits = model.eval()(*test_pairs)
    train_logits = model.train()(*test_pairs)
    assert (train_logits - eval_logits).abs().max() > 1e-3


def test_temperature_anneals_linearly_then_holds(tiny_data: InteractionData) -> None:
    config = ModelConfig(
        embedding_dim=2, num_meta_queries=2, tau_start=2.0, tau_floor=0.2, anneal_fraction=0.5
    )
    model = new_model("fit", tiny_data.schema, config, seed=0)
    assert isinstance(model, FIT)
    for fraction in [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]:
        model.on_training_progress(fraction)
        expected = 2.0 + (0.2 - 2.0) * min(fraction / 0.5, 1.0)
        assert float(model.meta_query.temperature) == pytest.approx(expected, abs=1e-6)
