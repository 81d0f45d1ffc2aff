"""IntTower: heads from every user-tower layer, the sum-max FE score, and the CIR loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.settings import JobSettings
from offline_jobs.training.loop import batch_tensors, new_model
from prerank_model.models.int_tower import IntTower
from tests.prerank_model.models.model_checks import (
    Tensors,
    check_export_parity,
    check_forward_is_the_composition,
    check_serving_equals_the_pairs,
    check_shapes,
    check_training_reduces_the_loss,
)

LAYERS = (16, 8)  # two hidden layers, so that the layer-wise heads are exercised


@pytest.fixture
def int_tower(tiny_data: InteractionData, job_settings: JobSettings) -> IntTower:
    config = job_settings.model.model_copy(update={"tower_hidden": LAYERS})
    model = new_model("inttower", tiny_data.schema, config, seed=3)
    assert isinstance(model, IntTower)
    return model.eval()


def test_every_hidden_layer_emits_user_heads(
    int_tower: IntTower, pairs: Tensors, job_settings: JobSettings
) -> None:
    config = job_settings.model
    user_heads = len(LAYERS) * config.user_heads
    check_shapes(
        int_tower, pairs, (1, user_heads, config.head_dim), (config.item_heads, config.head_dim)
    )


@torch.no_grad()
def test_score_is_sum_over_user_heads_of_max_over_item_heads(
    int_tower: IntTower, pairs: Tensors
) -> None:
    user_features, history, item_features = pairs
    users = int_tower.encode_user(user_features, history)[:, 0]  # [B, L * H_u, d]
    items = int_tower.encode_items(item_features)[0]  # [B, H_v, d]
    expected = torch.tensor(
        [sum(max(float(u @ v) for v in items[n]) for u in users[n]) for n in range(users.shape[0])]
    )
    torch.testing.assert_close(int_tower(*pairs), expected, atol=1e-5, rtol=0)


def test_forward_and_serving_are_the_composition(
    int_tower: IntTower, pairs: Tensors, tiny_data: InteractionData
) -> None:
    check_forward_is_the_composition(int_tower, pairs)
    check_serving_equals_the_pairs(int_tower, tiny_data)


def test_contrastive_loss_is_weighted_in_batch_infonce_with_gradients_to_both_towers(
    int_tower: IntTower, tiny_data: InteractionData, job_settings: JobSettings
) -> None:
    batch = make_batch(tiny_data, tiny_data.splits["train"][:64])
    user_features, history, item_features = batch_tensors(batch)
    labels = torch.from_numpy(batch.labels)
    assert 0 < labels.sum() < labels.numel()
    aux = int_tower.training_forward(user_features, history, item_features, labels).auxiliary_loss
    assert aux is not None
    with torch.no_grad():
        deepest_layer = -job_settings.model.user_heads
        users = int_tower.encode_user(user_features, history)[:, 0, deepest_layer:]
        items = int_tower.encode_items(item_features)[0]
        u = torch.nn.functional.normalize(users.mean(1), dim=-1)
        v = torch.nn.functional.normalize(items.mean(1), dim=-1)
        logits = u @ v.T / job_settings.model.contrastive_temperature
        infonce = -torch.log_softmax(logits, dim=-1).diagonal()
        expected = job_settings.model.contrastive_weight * infonce[labels > 0].mean()
    torch.testing.assert_close(aux.detach(), expected)
    assert float(aux.detach()) > 0
    user_grad = torch.autograd.grad(
        aux, int_tower.user_tower.projections[-1].weight, retain_graph=True
    )
    item_grad = torch.autograd.grad(aux, int_tower.item_tower[0].weight)
    assert user_grad[0].abs().sum() > 0
    assert item_grad[0].abs().sum() > 0


def test_contrastive_loss_is_zero_without_positives(int_tower: IntTower, pairs: Tensors) -> None:
    output = int_tower.training_forward(*pairs, torch.zeros(pairs[0].shape[0]))
    assert output.auxiliary_loss is not None
    assert float(output.auxiliary_loss.detach()) == 0.0


def test_training_steps_reduce_the_loss(int_tower: IntTower, tiny_data: InteractionData) -> None:
    check_training_reduces_the_loss(int_tower, tiny_data)


def test_onnx_export_matches_pytorch(
    int_tower: IntTower, tiny_data: InteractionData, tmp_path: Path
) -> None:
    check_export_parity(int_tower, tiny_data, tmp_path)
