"""Offline precompute of the catalogue: sorted rows, the model's item heads, FAISS meta index;
streamed batch by batch into the bundle's files with memory bounded by the batch, and sharded
into contiguous slices that together write the single process's files."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from offline_jobs.bundling.precompute import (
    ITEM_TABLE_FILES,
    ItemTable,
    SliceSummary,
    allocate_item_table,
    open_item_table,
    precompute_items,
    precompute_slice,
    slice_rows,
)
from offline_jobs.data.dataset import InteractionData
from offline_jobs.settings import JobSettings
from offline_jobs.training.loop import new_model
from prerank_contract.features import FeatureSchema
from prerank_model.models.base import PrerankModel
from prerank_model.models.fit import FIT
from tests.conftest import TINY_MODEL

RAGGED_BATCH = 64  # does not divide the tiny catalogue: the last batch is short
# Item heads of one row may differ in the last bits between batch sizes (a batch of 1 takes
# BLAS's matrix-vector path); ids, features and meta indices may not differ at all.
HEADS_ATOL = 1e-6
COSINE_ATOL = 1e-6
MEMORY_CATALOGUE = 4_000  # items of the smaller catalogue of the memory test; the other has 10x
MEMORY_BATCH = 256
# Per batch, precompute holds a few arrays of `batch` rows (ids, gathered features, FAISS's
# answer, a meta index) and a constant rest (tqdm, maps, FAISS index): bound both generously.
BATCH_COPIES = 8
FIXED_OVERHEAD_BYTES = 256 << 10


def file_digests(directory: Path) -> dict[str, str]:
    return {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
        for name in ITEM_TABLE_FILES
    }


@pytest.fixture(scope="module")
def table(
    trained_fit: PrerankModel, tiny_data: InteractionData, tmp_path_factory: pytest.TempPathFactory
) -> ItemTable:
    shuffled = np.random.default_rng(0).permutation(tiny_data.catalogue)
    return precompute_items(
        trained_fit,
        shuffled,
        tiny_data.item_features,
        RAGGED_BATCH,
        tmp_path_factory.mktemp("table"),
        progress=False,
    )


def test_item_ids_are_the_sorted_catalogue(table: ItemTable, tiny_data: InteractionData) -> None:
    assert tiny_data.catalogue.size % RAGGED_BATCH != 0
    np.testing.assert_array_equal(table.item_ids, np.sort(tiny_data.catalogue))
    np.testing.assert_array_equal(table.item_features, tiny_data.item_features[table.item_ids])


@torch.no_grad()
def test_item_heads_equal_encode_items(table: ItemTable, trained_fit: PrerankModel) -> None:
    heads, _ = trained_fit.encode_items(torch.from_numpy(np.asarray(table.item_features)))
    assert table.item_heads.dtype == np.float32
    np.testing.assert_allclose(table.item_heads, heads.numpy(), atol=1e-6, rtol=0)


@torch.no_grad()
def test_faiss_meta_index_equals_the_argmax_of_similarity(
    table: ItemTable, trained_fit: PrerankModel
) -> None:
    assert isinstance(trained_fit, FIT)
    keys = trained_fit.item_embedding(torch.from_numpy(np.asarray(table.item_features)))
    expected = (keys @ trained_fit.meta_query.meta_matrix.T).argmax(dim=-1).numpy()
    assert np.unique(expected).size > 1
    assert table.meta_index.dtype == np.int32
    np.testing.assert_array_equal(table.meta_index, expected)
    np.testing.assert_array_equal(
        table.meta_counts, np.bincount(expected, minlength=trained_fit.num_meta_queries)
    )


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


def test_the_batched_cosine_is_the_models_mean_over_the_catalogue(
    table: ItemTable, trained_fit: PrerankModel
) -> None:
    assert isinstance(trained_fit, FIT)
    assignment = trained_fit.meta_assignment(torch.from_numpy(np.asarray(table.item_features)))
    assert assignment is not None and table.soft_hard_cosine is not None
    whole = float(assignment.soft_hard_cosines.mean())
    assert table.soft_hard_cosine == pytest.approx(whole, abs=COSINE_ATOL)


def test_a_model_without_meta_vectors_gets_index_zero_and_no_faiss(
    tiny_data: InteractionData, tmp_path: Path
) -> None:
    model = new_model("two_tower", tiny_data.schema, TINY_MODEL, seed=0)
    table = precompute_items(
        model, tiny_data.catalogue, tiny_data.item_features, RAGGED_BATCH, tmp_path, progress=False
    )
    assert table.meta_matrix is None and table.faiss_index is None
    assert table.soft_hard_cosine is None
    assert not np.asarray(table.meta_index).any()
    np.testing.assert_array_equal(table.meta_counts, [tiny_data.catalogue.size])


def test_the_files_are_what_np_save_writes(table: ItemTable, tmp_path: Path) -> None:
    """The streamed files are the bytes a whole-array np.save writes (the bundle format)."""
    directory = Path(table.item_ids.filename).parent
    for name, array in zip(
        ITEM_TABLE_FILES,
        (table.item_ids, table.item_features, table.item_heads, table.meta_index),
        strict=True,
    ):
        np.save(tmp_path / name, np.asarray(array))
        assert (tmp_path / name).read_bytes() == (directory / name).read_bytes(), name


def test_batch_sizes_one_seven_and_whole_give_the_same_table(
    trained_fit: PrerankModel, tiny_data: InteractionData, tmp_path: Path
) -> None:
    tables = {}
    for batch in (1, 7, tiny_data.catalogue.size):
        tables[batch] = precompute_items(
            trained_fit,
            tiny_data.catalogue,
            tiny_data.item_features,
            batch,
            tmp_path / str(batch),
            progress=False,
        )
    whole = tables[tiny_data.catalogue.size]
    for other in tables.values():
        for name in ("item_ids", "item_features", "meta_index", "meta_counts"):
            np.testing.assert_array_equal(getattr(other, name), getattr(whole, name), name)
        np.testing.assert_allclose(other.item_heads, whole.item_heads, atol=HEADS_ATOL, rtol=0)
        assert other.soft_hard_cosine == pytest.approx(whole.soft_hard_cosine, abs=COSINE_ATOL)


@pytest.mark.parametrize(
    ("count", "batch", "world_size"), [(300, 64, 2), (300, 7, 3), (5, 7, 4), (1, 1, 2), (64, 8, 8)]
)
def test_slices_are_contiguous_whole_batches_covering_every_row_once(
    count: int, batch: int, world_size: int
) -> None:
    slices = [slice_rows(count, batch, rank, world_size) for rank in range(world_size)]
    assert [row for rows in slices for row in rows] == list(range(count))
    assert all(rows.start % batch == 0 for rows in slices if rows)
    batches = [len(range(rows.start, rows.stop, batch)) for rows in slices]
    assert max(batches) - min(batches) <= 1  # as even as whole batches allow


@pytest.mark.parametrize(("batch", "world_size"), [(7, 3), (RAGGED_BATCH, 2), (1000, 4)])
def test_sharded_slices_write_the_single_process_files(
    trained_fit: PrerankModel,
    tiny_data: InteractionData,
    tmp_path: Path,
    batch: int,
    world_size: int,
) -> None:
    """Ranks simulated in-process: each fills its slice of one allocation, byte for byte the
    files (and the summary) of the single process with the same batch size."""
    single = precompute_items(
        trained_fit,
        tiny_data.catalogue,
        tiny_data.item_features,
        batch,
        tmp_path / "single",
        progress=False,
    )
    sharded_dir = tmp_path / "sharded"
    sharded_dir.mkdir()
    count = allocate_item_table(
        sharded_dir, trained_fit, tiny_data.catalogue, tiny_data.item_features, batch
    )
    parts = [
        precompute_slice(
            trained_fit,
            tiny_data.item_features,
            sharded_dir,
            slice_rows(count, batch, rank, world_size),
            batch,
            progress=False,
        )
        for rank in reversed(range(world_size))  # any order: each writes only its own rows
    ]
    sharded = open_item_table(sharded_dir, trained_fit, SliceSummary.combine(parts))
    assert file_digests(sharded_dir) == file_digests(tmp_path / "single")
    np.testing.assert_array_equal(sharded.meta_counts, single.meta_counts)
    assert sharded.soft_hard_cosine == pytest.approx(single.soft_hard_cosine, abs=COSINE_ATOL)


def wide_catalogue(schema: FeatureSchema, items: int) -> tuple[FeatureSchema, np.ndarray]:
    """`schema` with an item id vocabulary of `items`, and a feature table [items + 1, S_i] whose
    other item fields are drawn at random (seeded)."""
    fields = tuple(
        field.model_copy(update={"vocab_size": items + 1}) if field.name == "item_id" else field
        for field in schema.fields
    )
    wide = schema.model_copy(update={"fields": fields})
    rng = np.random.default_rng(0)
    columns = [np.arange(items + 1)]
    columns += [rng.integers(1, field.vocab_size, items + 1) for field in wide.item_fields[1:]]
    return wide, np.stack(columns, axis=1)


def traced_peak(
    model: PrerankModel, items: int, table: np.ndarray, directory: Path
) -> tuple[int, ItemTable]:
    """Peak bytes Python and numpy allocate while precomputing items 1..`items`."""
    catalogue = np.arange(1, items + 1)
    tracemalloc.start()
    try:
        result = precompute_items(model, catalogue, table, MEMORY_BATCH, directory, progress=False)
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_the_batch_not_the_catalogue(
    tiny_data: InteractionData, tmp_path: Path
) -> None:
    big = 10 * MEMORY_CATALOGUE
    schema, features = wide_catalogue(tiny_data.schema, big)
    model = new_model("fit", schema, TINY_MODEL, seed=0)
    small_peak, _ = traced_peak(model, MEMORY_CATALOGUE, features, tmp_path / "small")
    big_peak, result = traced_peak(model, big, features, tmp_path / "big")

    row_bytes = sum(
        array[:1].nbytes
        for array in (result.item_ids, result.item_features, result.item_heads, result.meta_index)
    )
    bound = BATCH_COPIES * MEMORY_BATCH * row_bytes + FIXED_OVERHEAD_BYTES
    catalogue_bytes = big * row_bytes
    print(f"tracemalloc peak: {small_peak} B ({MEMORY_CATALOGUE} items), {big_peak} B ({big})")
    assert bound < catalogue_bytes / 4  # the bound could be broken by holding the catalogue
    assert big_peak <= bound, (big_peak, bound)
    assert big_peak - small_peak < catalogue_bytes / 100, (small_peak, big_peak)
