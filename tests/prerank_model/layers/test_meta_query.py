"""MetaQueryModule: the query group, the hard and soft queries, and the train/eval switch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prerank_model.layers.meta_query import MetaQueryModule

K, D, N = 4, 8, 32


@pytest.fixture
def module() -> MetaQueryModule:
    torch.manual_seed(0)
    return MetaQueryModule(num_queries=K, key_dim=D, temperature=1.0)


@pytest.fixture
def keys() -> torch.Tensor:
    return torch.randn(N, D, generator=torch.Generator().manual_seed(1))


def numpy_query_group(module: MetaQueryModule) -> np.ndarray:
    """Q*[k] = sum_j <Q_k, Q_j> Q_j, in float64."""
    q = module.meta_matrix.detach().double().numpy()
    return np.stack([sum(q[k] @ q[j] * q[j] for j in range(K)) for k in range(K)])


def test_query_group_is_gram_times_meta_matrix(module: MetaQueryModule) -> None:
    group = module.query_group()
    assert group.shape == (K, D)
    np.testing.assert_allclose(group.detach().numpy(), numpy_query_group(module), atol=1e-5)


@torch.no_grad()
def test_hard_query_in_eval_is_the_query_group_row_of_the_most_similar_meta_vector(
    module: MetaQueryModule, keys: torch.Tensor
) -> None:
    module.eval()
    similarity = keys.double().numpy() @ module.meta_matrix.double().numpy().T  # [N, K]
    expected_index = similarity.argmax(axis=1)
    assert np.unique(expected_index).size > 1, "the keys should pick several meta vectors"
    assert module.meta_index(keys).dtype == torch.int64
    np.testing.assert_array_equal(module.meta_index(keys).numpy(), expected_index)
    np.testing.assert_allclose(
        module.query(keys).numpy(), numpy_query_group(module)[expected_index], atol=1e-5
    )


@torch.no_grad()
def test_soft_query_approaches_the_hard_query_as_temperature_falls(
    module: MetaQueryModule, keys: torch.Tensor
) -> None:
    hard = module.hard_query(keys)
    module.temperature.fill_(1.0)
    warm = torch.nn.functional.cosine_similarity(module.soft_query(keys), hard, dim=-1)
    module.temperature.fill_(1e-3)
    cold = torch.nn.functional.cosine_similarity(module.soft_query(keys), hard, dim=-1)
    assert warm.min() < 0.999, "at tau=1 the soft query should still be a visible mix"
    assert cold.min() > 0.999


@torch.no_grad()
def test_soft_query_at_unit_temperature_is_a_convex_mix_of_query_group_rows(
    module: MetaQueryModule, keys: torch.Tensor
) -> None:
    module.temperature.fill_(1.0)
    group = numpy_query_group(module)  # [K, D], full row rank since K < D
    soft = module.soft_query(keys).double().numpy()  # [N, D]
    weights, *_ = np.linalg.lstsq(group.T, soft.T, rcond=None)  # soft^T = group^T weights
    weights = weights.T  # [N, K]
    np.testing.assert_allclose(weights @ group, soft, atol=1e-4)
    assert (weights > -1e-4).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-4)
    similarity = keys.double().numpy() @ module.meta_matrix.double().numpy().T
    expected = np.exp(similarity - similarity.max(axis=1, keepdims=True))
    np.testing.assert_allclose(weights, expected / expected.sum(1, keepdims=True), atol=1e-3)


@torch.no_grad()
def test_query_is_soft_in_training_and_hard_in_eval(
    module: MetaQueryModule, keys: torch.Tensor
) -> None:
    soft, hard = module.soft_query(keys), module.hard_query(keys)
    assert not torch.allclose(soft, hard, atol=1e-3)
    module.train()
    torch.testing.assert_close(module.query(keys), soft)
    module.eval()
    torch.testing.assert_close(module.query(keys), hard)
