"""DAT: augmented vectors in each tower (its adaptive-mimic loss: tests/offline_jobs/training)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from offline_jobs.data.dataset import InteractionData
from offline_jobs.settings import JobSettings
from offline_jobs.training.loop import new_model
from prerank_model.models.dat import DAT
from tests.prerank_model.models.model_checks import (
    Tensors,
    check_export_parity,
    check_forward_is_the_composition,
    check_serving_equals_the_pairs,
    check_shapes,
    check_training_reduces_the_loss,
)


@pytest.fixture
def dat(tiny_data: InteractionData, job_settings: JobSettings) -> DAT:
    model = new_model("dat", tiny_data.schema, job_settings.model, seed=3)
    assert isinstance(model, DAT)
    return model.eval()


def test_one_vector_per_side(dat: DAT, pairs: Tensors, job_settings: JobSettings) -> None:
    dim = job_settings.model.item_heads * job_settings.model.head_dim
    check_shapes(dat, pairs, (1, 1, dim), (1, dim))


def test_forward_and_serving_are_the_composition(
    dat: DAT, pairs: Tensors, tiny_data: InteractionData
) -> None:
    check_forward_is_the_composition(dat, pairs)
    check_serving_equals_the_pairs(dat, tiny_data)


@torch.no_grad()
def test_logit_is_the_scaled_cosine_of_the_tower_outputs(dat: DAT, pairs: Tensors) -> None:
    user_features, history, item_features = pairs
    users = dat.encode_user(user_features, history)[:, 0, 0]  # [B, D]
    items = dat.encode_items(item_features)[0][:, 0]
    torch.testing.assert_close(users.norm(dim=-1), torch.ones(users.shape[0]))
    torch.testing.assert_close(items.norm(dim=-1), torch.ones(items.shape[0]))
    expected = dat.logit_scale * (users * items).sum(-1) + dat.logit_bias
    torch.testing.assert_close(dat(*pairs), expected, atol=1e-5, rtol=0)


@torch.no_grad()
def test_each_tower_reads_its_ids_augmented_vector(dat: DAT, pairs: Tensors) -> None:
    user_features, history, item_features = pairs
    users_before = dat.encode_user(user_features, history)
    items_before = dat.encode_items(item_features)[0]
    dat.user_augment.weight[user_features[0, 0]] += 1.0
    dat.item_augment.weight[item_features[0, 0]] += 1.0
    users_after = dat.encode_user(user_features, history)
    items_after = dat.encode_items(item_features)[0]
    assert not torch.allclose(users_after[0], users_before[0])
    assert not torch.allclose(items_after[0], items_before[0])
    others = user_features[:, 0] != user_features[0, 0]
    torch.testing.assert_close(users_after[others], users_before[others])


def test_training_steps_reduce_the_loss(dat: DAT, tiny_data: InteractionData) -> None:
    check_training_reduces_the_loss(dat, tiny_data)


def test_onnx_export_matches_pytorch(dat: DAT, tiny_data: InteractionData, tmp_path: Path) -> None:
    check_export_parity(dat, tiny_data, tmp_path)
