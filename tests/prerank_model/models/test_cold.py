"""COLD: pairwise; encode_user / encode_items are look-ups only, the whole network is `score`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from offline_jobs.data.dataset import InteractionData
from offline_jobs.settings import JobSettings
from offline_jobs.training.loop import new_model
from prerank_model.models.cold import COLD
from tests.prerank_model.models.model_checks import (
    Tensors,
    check_export_parity,
    check_forward_is_the_composition,
    check_serving_equals_the_pairs,
    check_shapes,
    check_training_reduces_the_loss,
)


@pytest.fixture
def cold(tiny_data: InteractionData, job_settings: JobSettings) -> COLD:
    model = new_model("cold", tiny_data.schema, job_settings.model, seed=3)
    assert isinstance(model, COLD)
    return model.eval()


def test_is_pairwise_with_field_embeddings_as_heads(
    cold: COLD, pairs: Tensors, tiny_data: InteractionData, job_settings: JobSettings
) -> None:
    assert cold.kind == "pairwise"
    user_fields, item_fields = len(tiny_data.schema.user_fields), len(tiny_data.schema.item_fields)
    dim = job_settings.model.embedding_dim
    check_shapes(cold, pairs, (1, user_fields + item_fields, dim), (item_fields, dim))


@torch.no_grad()
def test_encoders_are_look_ups_and_the_network_is_in_score(cold: COLD, pairs: Tensors) -> None:
    user_features, history, item_features = pairs
    users, (items, meta_index) = (
        cold.encode_user(user_features, history),
        cold.encode_items(item_features),
    )
    # The item "heads" are exactly the embedding rows: nothing learned beyond the tables.
    torch.testing.assert_close(items[:, 0], cold.item_embedding.tables[0](item_features[:, 0]))
    logits = cold.score(users, items, meta_index)
    for module in (cold.field_weights, cold.mlp):
        for parameter in module.parameters():
            parameter.add_(0.5)
    torch.testing.assert_close(cold.encode_user(user_features, history), users)
    torch.testing.assert_close(cold.encode_items(item_features)[0], items)
    assert not torch.allclose(cold.score(users, items, meta_index), logits)


@torch.no_grad()
def test_se_weights_every_field_of_the_pair(cold: COLD, pairs: Tensors) -> None:
    user_features, history, item_features = pairs
    items = cold.encode_items(item_features)[0]
    fields = torch.cat([cold.encode_user(user_features, history)[:, 0], items], dim=1)
    reweighted = cold.field_weights(fields)
    ratio = reweighted.norm(dim=-1) / fields.norm(dim=-1).clamp_min(1e-12)
    present = fields.norm(dim=-1) > 0
    assert ((ratio[present] > 0) & (ratio[present] < 1)).all()  # sigmoid weights in (0, 1)
    assert ratio[present].std() > 0  # and not one constant weight


def test_forward_and_serving_are_the_composition(
    cold: COLD, pairs: Tensors, tiny_data: InteractionData
) -> None:
    check_forward_is_the_composition(cold, pairs)
    check_serving_equals_the_pairs(cold, tiny_data)


def test_training_steps_reduce_the_loss(cold: COLD, tiny_data: InteractionData) -> None:
    check_training_reduces_the_loss(cold, tiny_data)


def test_todays_two_graph_export_already_carries_the_whole_pair_network(
    cold: COLD, tiny_data: InteractionData, tmp_path: Path
) -> None:
    """user_tower.onnx = look-ups + history mean; scorer.onnx = SE + MLP over the N pairs."""
    check_export_parity(cold, tiny_data, tmp_path)
