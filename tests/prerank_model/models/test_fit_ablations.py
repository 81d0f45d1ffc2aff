"""FIT's four ablations: one class, a variant each; every flag changes exactly its part."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from offline_jobs.data.dataset import InteractionData
from offline_jobs.settings import JobSettings
from offline_jobs.training.loop import new_model
from prerank_model.layers.scorers import (
    ConcatMLPScorer,
    HeadwiseDotScorer,
    LightweightSimilarityScorer,
    SumMaxScorer,
)
from prerank_model.models.fit import FIT
from tests.prerank_model.models.model_checks import (
    Tensors,
    check_export_parity,
    check_forward_is_the_composition,
    check_serving_equals_the_pairs,
    check_shapes,
    check_training_reduces_the_loss,
)

ABLATIONS = ["fit_no_mqm", "fit_no_lss", "fit_summax", "fit_fc"]


def build(name: str, data: InteractionData, settings: JobSettings) -> FIT:
    # Seed 1: with the tiny LSS (R=4, C=3) some seeds (0, 3 for fit; 3, 4 for fit_no_mqm) start
    # with every column ReLU dead for every pair, and then only the output bias can learn.
    model = new_model(name, data.schema, settings.model, seed=1)
    assert isinstance(model, FIT)
    return model.eval()


@torch.no_grad()
def per_pair_heads(model: FIT, pairs: Tensors) -> tuple[torch.Tensor, torch.Tensor]:
    """(user heads picked by each item's meta index [B, H_u, d], item heads [B, H_v, d])."""
    user_features, history, item_features = pairs
    users = model.encode_user(user_features, history)
    items, meta_index = model.encode_items(item_features)
    return users[torch.arange(users.shape[0]), meta_index], items


def test_each_name_is_fit_with_only_its_part_changed(
    tiny_data: InteractionData, job_settings: JobSettings
) -> None:
    full = build("fit", tiny_data, job_settings)
    scorers = {
        "fit": LightweightSimilarityScorer,
        "fit_no_mqm": LightweightSimilarityScorer,
        "fit_no_lss": HeadwiseDotScorer,
        "fit_summax": SumMaxScorer,
        "fit_fc": ConcatMLPScorer,
    }
    towers = {n for n, _ in full.named_parameters() if not n.startswith("scorer.")}
    for name, scorer in scorers.items():
        model = build(name, tiny_data, job_settings)
        assert model.name == name
        assert type(model.scorer) is scorer
        assert {n for n, _ in model.named_parameters() if not n.startswith("scorer.")} == towers
    assert full.num_meta_queries == job_settings.model.num_meta_queries


@pytest.mark.parametrize("name", ABLATIONS)
def test_interface_composition_serving_and_training(
    name: str, pairs: Tensors, tiny_data: InteractionData, job_settings: JobSettings
) -> None:
    model = build(name, tiny_data, job_settings)
    config = job_settings.model
    queries = 1 if name == "fit_no_mqm" else config.num_meta_queries
    user_heads = config.item_heads if name == "fit_no_lss" else config.user_heads
    check_shapes(
        model,
        pairs,
        (queries, user_heads, config.head_dim),
        (config.item_heads, config.head_dim),
    )
    check_forward_is_the_composition(model, pairs)
    check_serving_equals_the_pairs(model, tiny_data)
    check_training_reduces_the_loss(model, tiny_data)


@torch.no_grad()
def test_no_mqm_has_one_user_representation_and_no_soft_query(
    pairs: Tensors, tiny_data: InteractionData, job_settings: JobSettings
) -> None:
    model = build("fit_no_mqm", tiny_data, job_settings)
    assert model.meta_query.meta_matrix.shape[0] == 1
    assert torch.count_nonzero(model.encode_items(pairs[2])[1]) == 0
    model.meta_query.temperature.fill_(1.0)
    torch.testing.assert_close(model.train()(*pairs), model.eval()(*pairs))


@torch.no_grad()
def test_no_lss_is_the_sum_over_heads_of_head_dot_products(
    pairs: Tensors, tiny_data: InteractionData, job_settings: JobSettings
) -> None:
    model = build("fit_no_lss", tiny_data, job_settings)
    users, items = per_pair_heads(model, pairs)
    expected = torch.tensor(
        [
            sum(float(users[n, h] @ items[n, h]) for h in range(items.shape[1]))
            for n in range(users.shape[0])
        ]
    )
    torch.testing.assert_close(model(*pairs), expected, atol=1e-5, rtol=0)


@torch.no_grad()
def test_summax_is_the_sum_over_user_heads_of_the_max_over_item_heads(
    pairs: Tensors, tiny_data: InteractionData, job_settings: JobSettings
) -> None:
    model = build("fit_summax", tiny_data, job_settings)
    users, items = per_pair_heads(model, pairs)
    expected = torch.tensor(
        [sum(max(float(u @ v) for v in items[n]) for u in users[n]) for n in range(users.shape[0])]
    )
    torch.testing.assert_close(model(*pairs), expected, atol=1e-5, rtol=0)


@torch.no_grad()
def test_fc_is_an_mlp_over_the_concatenated_heads(
    pairs: Tensors, tiny_data: InteractionData, job_settings: JobSettings
) -> None:
    model = build("fit_fc", tiny_data, job_settings)
    assert isinstance(model.scorer, ConcatMLPScorer)
    users, items = per_pair_heads(model, pairs)
    first, *rest = model.scorer.mlp
    assert isinstance(first, torch.nn.Linear)
    hidden = job_settings.model.fc_scorer_hidden[0]
    head_floats = (users.shape[1] + items.shape[1]) * users.shape[2]
    assert first.weight.shape == (hidden, head_floats)
    x = torch.cat([users.flatten(1), items.flatten(1)], dim=-1)
    for layer in (first, *rest):
        x = layer(x)
    torch.testing.assert_close(model(*pairs), x.squeeze(-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ABLATIONS)
def test_onnx_export_of_each_ablation_matches_pytorch(
    name: str, tiny_data: InteractionData, job_settings: JobSettings, tmp_path: Path
) -> None:
    check_export_parity(build(name, tiny_data, job_settings), tiny_data, tmp_path)
