"""RankTower: gated multi-head towers; cross-attention and max-similarity inside `score`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from offline_jobs.data.dataset import InteractionData
from offline_jobs.settings import JobSettings
from offline_jobs.training.loop import new_model
from prerank_model.models.rank_tower import RankTower
from tests.prerank_model.models.model_checks import (
    Tensors,
    check_export_parity,
    check_forward_is_the_composition,
    check_serving_equals_the_pairs,
    check_shapes,
    check_training_reduces_the_loss,
)


@pytest.fixture
def rank_tower(tiny_data: InteractionData, job_settings: JobSettings) -> RankTower:
    model = new_model("ranktower", tiny_data.schema, job_settings.model, seed=3)
    assert isinstance(model, RankTower)
    return model.eval()


def test_heads_per_tower(rank_tower: RankTower, pairs: Tensors, job_settings: JobSettings) -> None:
    config = job_settings.model
    check_shapes(
        rank_tower,
        pairs,
        (1, config.user_heads, config.head_dim),
        (config.item_heads, config.head_dim),
    )


@torch.no_grad()
def test_user_heads_are_attended_per_candidate(rank_tower: RankTower, pairs: Tensors) -> None:
    """The same user heads become different attended heads for two candidates (late
    interaction), and the logit is a scaled sum-max of cosines, so bounded by H_u."""
    user_features, history, item_features = pairs
    users = rank_tower.encode_user(user_features[:1], history[:1])[0, 0]  # [H_u, d]
    items = rank_tower.encode_items(item_features[:2])[0]  # [2, H_v, d]
    attended = rank_tower.user_cross(users.expand(2, -1, -1), items)
    assert not torch.allclose(attended[0], attended[1])
    cosine_sum = (rank_tower(*pairs) - rank_tower.logit_bias) / rank_tower.logit_scale
    assert cosine_sum.abs().max() <= users.shape[0] + 1e-5


def test_forward_and_serving_are_the_composition(
    rank_tower: RankTower, pairs: Tensors, tiny_data: InteractionData
) -> None:
    check_forward_is_the_composition(rank_tower, pairs)
    check_serving_equals_the_pairs(rank_tower, tiny_data)


def test_training_steps_reduce_the_loss(rank_tower: RankTower, tiny_data: InteractionData) -> None:
    check_training_reduces_the_loss(rank_tower, tiny_data)


def test_onnx_export_matches_pytorch(
    rank_tower: RankTower, tiny_data: InteractionData, tmp_path: Path
) -> None:
    check_export_parity(rank_tower, tiny_data, tmp_path)
