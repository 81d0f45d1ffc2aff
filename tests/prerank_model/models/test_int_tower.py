"""IntTower: heads from every user-tower layer and the sum-max FE score (its CIR loss:
tests/offline_jobs/training)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from offline_jobs.data.dataset import InteractionData
from offline_jobs.settings import JobSettings
from prerank_model.models.int_tower import IntTower
from tests.conftest import INT_TOWER_LAYERS, layered_int_tower
from tests.prerank_model.models.model_checks import (
    Tensors,
    check_export_parity,
    check_forward_is_the_composition,
    check_serving_equals_the_pairs,
    check_shapes,
    check_training_reduces_the_loss,
)


@pytest.fixture
def int_tower(tiny_data: InteractionData, job_settings: JobSettings) -> IntTower:
    return layered_int_tower(tiny_data, job_settings)


def test_every_hidden_layer_emits_user_heads(
    int_tower: IntTower, pairs: Tensors, job_settings: JobSettings
) -> None:
    config = job_settings.model
    user_heads = len(INT_TOWER_LAYERS) * config.user_heads
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


def test_training_steps_reduce_the_loss(int_tower: IntTower, tiny_data: InteractionData) -> None:
    check_training_reduces_the_loss(int_tower, tiny_data)


def test_onnx_export_matches_pytorch(
    int_tower: IntTower, tiny_data: InteractionData, tmp_path: Path
) -> None:
    check_export_parity(int_tower, tiny_data, tmp_path)
