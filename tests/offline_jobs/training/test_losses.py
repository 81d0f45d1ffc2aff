"""The auxiliary losses: DAT's adaptive-mimic loss with its stop-gradient, IntTower's in-batch
CIR with gradients to both towers; each weighted by the objective as the config says."""

from __future__ import annotations

import pytest
import torch

from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.settings import JobSettings
from offline_jobs.training.loop import batch_tensors, new_model
from offline_jobs.training.objective import auxiliary_loss
from prerank_model.models.base import PrerankModel
from prerank_model.models.dat import DAT
from prerank_model.models.int_tower import IntTower
from tests.conftest import layered_int_tower

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@pytest.fixture
def dat(tiny_data: InteractionData, job_settings: JobSettings) -> DAT:
    model = new_model("dat", tiny_data.schema, job_settings.model, seed=3)
    assert isinstance(model, DAT)
    return model.eval()


@pytest.fixture
def int_tower(tiny_data: InteractionData, job_settings: JobSettings) -> IntTower:
    return layered_int_tower(tiny_data, job_settings)


@pytest.fixture
def labelled(tiny_data: InteractionData) -> tuple[Tensors, torch.Tensor]:
    batch = make_batch(tiny_data, tiny_data.splits["train"][:64])
    labels = torch.from_numpy(batch.labels)
    assert 0 < labels.sum() < labels.numel()
    return batch_tensors(batch), labels


def weighted_auxiliary(
    model: PrerankModel, tensors: Tensors, labels: torch.Tensor
) -> torch.Tensor | None:
    """The objective's auxiliary loss of `model` on one batch of pairs."""
    user_features, history, item_features = tensors
    pairs = model.encode_pairs(user_features, history, item_features)
    return auxiliary_loss(model, user_features, item_features, pairs, labels)


def test_mimic_loss_is_the_formula_on_positives_only(
    dat: DAT, labelled: tuple[Tensors, torch.Tensor], job_settings: JobSettings
) -> None:
    (user_features, history, item_features), labels = labelled
    aux = weighted_auxiliary(dat, (user_features, history, item_features), labels)
    assert aux is not None
    with torch.no_grad():
        p_u = dat.encode_user(user_features, history)[:, 0, 0]
        p_v = dat.encode_items(item_features)[0][:, 0]
        a_u = dat.user_augment(user_features[:, 0])
        a_v = dat.item_augment(item_features[:, 0])
        per_sample = ((a_u - p_v) ** 2).sum(-1) + ((a_v - p_u) ** 2).sum(-1)
        expected = job_settings.model.mimic_loss_weight * (labels * per_sample).mean()
    assert float(aux.detach()) > 0
    torch.testing.assert_close(aux.detach(), expected)
    no_positives = weighted_auxiliary(
        dat, (user_features, history, item_features), torch.zeros_like(labels)
    )
    assert no_positives is not None
    assert float(no_positives.detach()) == 0.0


def test_mimic_loss_moves_only_the_augmented_vectors(
    dat: DAT, labelled: tuple[Tensors, torch.Tensor]
) -> None:
    tensors, labels = labelled
    aux = weighted_auxiliary(dat, tensors, labels)
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


def test_contrastive_loss_is_weighted_in_batch_infonce_with_gradients_to_both_towers(
    int_tower: IntTower, labelled: tuple[Tensors, torch.Tensor], job_settings: JobSettings
) -> None:
    (user_features, history, item_features), labels = labelled
    aux = weighted_auxiliary(int_tower, (user_features, history, item_features), labels)
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


def test_contrastive_loss_is_zero_without_positives(
    int_tower: IntTower, labelled: tuple[Tensors, torch.Tensor]
) -> None:
    tensors, labels = labelled
    aux = weighted_auxiliary(int_tower, tensors, torch.zeros_like(labels))
    assert aux is not None
    assert float(aux.detach()) == 0.0
