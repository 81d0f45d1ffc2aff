"""Offline precompute of the catalogue: sorted rows, the model's item heads, FAISS meta index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from offline_jobs.data.dataset import InteractionData
from offline_jobs.precompute import ItemTable, precompute_items
from offline_jobs.settings import JobSettings
from prerank_model.models.base import PrerankModel
from prerank_model.models.fit import FIT


@pytest.fixture(scope="module")
def table(trained_fit: PrerankModel, tiny_data: InteractionData) -> ItemTable:
    shuffled = np.random.default_rng(0).permutation(tiny_data.catalogue)
    # A batch size that does not divide the catalogue exercises the ragged last batch.
    return precompute_items(trained_fit, shuffled, tiny_data.item_features, 64, progress=False)


def test_item_ids_are_the_sorted_catalogue(table: ItemTable, tiny_data: InteractionData) -> None:
    assert tiny_data.catalogue.size % 64 != 0
    np.testing.assert_array_equal(table.item_ids, np.sort(tiny_data.catalogue))
    np.testing.assert_array_equal(table.item_features, tiny_data.item_features[table.item_ids])


@torch.no_grad()
def test_item_heads_equal_encode_items(table: ItemTable, trained_fit: PrerankModel) -> None:
    heads, _ = trained_fit.encode_items(torch.from_numpy(table.item_features))
    assert table.item_heads.dtype == np.float32
    np.testing.assert_allclose(table.item_heads, heads.numpy(), atol=1e-6, rtol=0)


@torch.no_grad()
def test_faiss_meta_index_equals_the_argmax_of_similarity(
    table: ItemTable, trained_fit: PrerankModel
) -> None:
    assert isinstance(trained_fit, FIT)
    keys = trained_fit.item_embedding(torch.from_numpy(table.item_features))
    expected = (keys @ trained_fit.meta_query.meta_matrix.T).argmax(dim=-1).numpy()
    assert np.unique(expected).size > 1
    assert table.meta_index.dtype == np.int32
    np.testing.assert_array_equal(table.meta_index, expected)


def test_meta_matrix_is_the_models_k_by_key_dim_matrix(
    table: ItemTable, trained_fit: PrerankModel, job_settings: JobSettings
) -> None:
    assert isinstance(trained_fit, FIT)
    key_dim = trained_fit.item_embedding.output_dim
    assert table.meta_matrix is not None and table.faiss_index is not None
    assert table.meta_matrix.shape == (job_settings.model.num_meta_queries, key_dim)
    np.testing.assert_array_equal(
        table.meta_matrix, trained_fit.meta_query.meta_matrix.detach().numpy()
    )
    assert table.faiss_index.ntotal == job_settings.model.num_meta_queries
