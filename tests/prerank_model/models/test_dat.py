"""DAT: augmented vectors in each tower, and the adaptive-mimic loss with its stop-gradient."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.settings import JobSettings
from offline_jobs.training.loop import batch_tensors, new_model
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


@pytest.fixture
def labelled(tiny_data: InteractionData) -> tuple[Tensors, torch.Tensor]:
    batch = make_batch(tiny_data, tiny_data.splits["train"][:64])
    labels = torch.from_numpy(batch.labels)
    assert 0 < labels.sum() < labels.numel()
    return batch_tensors(batch), labels


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


def test_mimic_loss_is_the_formula_on_positives_only(
    dat: DAT, labelled: tuple[Tensors, torch.Tensor]
) -> None:
    (user_features, history, item_features), labels = labelled
    output = dat.training_forward(user_features, history, item_features, labels)
    assert output.auxiliary_loss is not None
    with torch.no_grad():
        p_u = dat.encode_user(user_features, history)[:, 0, 0]
        p_v = dat.encode_items(item_features)[0][:, 0]
        a_u = dat.user_augment(user_features[:, 0])
        a_v = dat.item_augment(item_features[:, 0])
        per_sample = ((a_u - p_v) ** 2).sum(-1) + ((a_v - p_u) ** 2).sum(-1)
        expected = dat.mimic_loss_weight * (labels * per_sample).mean()
    assert float(output.auxiliary_loss.detach()) > 0
    torch.testing.assert_close(output.auxiliary_loss.detach(), expected)
    no_positives = dat.training_forward(
        user_features, history, item_features, torch.zeros_like(labels)
    )
    assert no_positives.auxiliary_loss is not None
    assert float(no_positives.auxiliary_loss.detach()) == 0.0


def test_mimic_loss_moves_only_the_augmented_vectors(
    dat: DAT, labelled: tuple[Tensors, torch.Tensor]
) -> None:
    (user_features, history, item_features), labels = labelled
    aux = dat.training_forward(user_features, history, item_features, labels).auxiliary_loss
    assert aux is not None
    named = dict(dat.named_parameters())
    grads = torch.autograd.grad(aux, list(named.values()), allow_unused=True)
    by_name = dict(zip(named, grads, strict=True))
    for name in ("user_augment.weight", "item_augment.weight"):
        grad = by_name[name]
        assert grad is not None
        assert grad.abs().sum() > 0, name
    towers = [name for name in named if name.split(".")[0] in {"user_tower", "item_tower"}]
    assert towers
    for name in towers:  # stop-gradient: the target tower output is not pulled
        grad = by_name[name]
        assert grad is None or grad.abs().sum() == 0, name


def test_training_steps_reduce_the_loss(dat: DAT, tiny_data: InteractionData) -> None:
    check_training_reduces_the_loss(dat, tiny_data)


def test_onnx_export_matches_pytorch(dat: DAT, tiny_data: InteractionData, tmp_path: Path) -> None:
    check_export_parity(dat, tiny_data, tmp_path)
