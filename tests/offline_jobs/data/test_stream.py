"""The on-disk sample store: what it holds, the order it gives each epoch and rank, the memory it
takes, training from it, and the stores it refuses."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from offline_jobs.data.dataset import InteractionData, SampleRows, make_batch
from offline_jobs.data.stream.format import FeatureTables, StoreError
from offline_jobs.data.stream.samples import StoreSamples
from offline_jobs.data.stream.store import SampleStore
from offline_jobs.data.stream.store_writer import SampleStoreWriter
from offline_jobs.data.synthetic import (
    generate_synthetic,
    write_synthetic_store,
)
from offline_jobs.training.evaluate import evaluate
from offline_jobs.training.loop import TrainConfig, new_model, train_model
from tests.conftest import TINY_MODEL, TINY_WORLD

CHUNK_ROWS = 100  # TINY_WORLD's 1,944 train samples in 20 chunks, the last one short
BATCH = 64  # not a divisor of CHUNK_ROWS: batches run across chunk boundaries

# Training: the world of test_distributed (about 0.63 test AUC, where TINY_WORLD gives 0.58 on
# 240 samples), in chunks of 4,096 rows (8 chunks). The store's order is not the in-memory
# permutation, and the order alone moves FIT's AUC here: over 12 shuffle seeds (same initial
# weights) in-memory and store runs both averaged 0.63 test and 0.62 validation AUC, with a
# standard deviation of 0.005-0.01 each, so about 0.012 for the difference of two runs. The
# tolerance is 2.5 of those; a misaligned feature or label costs far more (AUC 0.5).
TRAIN_WORLD = TINY_WORLD.model_copy(update={"num_users": 1000, "events_per_user": 40})
TRAIN_BUDGET = TrainConfig(seed=5, epochs=6, batch_size=512, learning_rate=3e-3)
TRAIN_CHUNK_ROWS = 4096
AUC_TOLERANCE = 0.03

# Memory: the reader's peak over an epoch, in units of (one chunk + one batch), whatever the
# store's size (measured: 1.7 for both stores below).
MEMORY_CHUNK_ROWS = 1000
MEMORY_BATCH = 256
PEAK_UNITS = 3.0


def write_split_store(
    data: InteractionData, split: str, path: Path, *, chunk_rows: int
) -> SampleStore:
    """The samples of `data.splits[split]` as a store at `path`, in the split's order (row i is
    sample `data.splits[split][i]`), written `chunk_rows` rows at a time."""
    indices = data.splits[split]
    with SampleStoreWriter(
        path,
        FeatureTables.of(data),
        dataset=data.name,
        chunk_rows=chunk_rows,
        sample_user_features=data.sample_user_features is not None,
        sample_item_features=data.sample_item_features is not None,
        details={"split": split, "dataset_fingerprint": data.fingerprint()},
    ) as writer:
        for start in range(0, indices.size, chunk_rows):
            writer.append(SampleRows.of(data, indices[start : start + chunk_rows]))
        return writer.commit()


def epoch_rows(source: StoreSamples, epoch: int) -> Iterator[np.ndarray]:
    """Store row indices of each batch of epoch `epoch`, [B] int64 (reads no data)."""
    pending: list[np.ndarray] = []
    for chunk, rows, ends in source.segments(epoch):
        pending.append(rows + source.store.chunk_bounds(chunk)[0])
        if ends:
            yield np.concatenate(pending)
            pending = []


def batches_equal(a: object, b: object) -> bool:
    names = ("user_features", "history", "item_features", "labels")
    return all(np.array_equal(getattr(a, n), getattr(b, n)) for n in names)


@pytest.fixture(scope="module")
def stores_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stores")


@pytest.fixture(scope="module")
def train_store(tiny_data: InteractionData, stores_dir: Path) -> SampleStore:
    return write_split_store(tiny_data, "train", stores_dir / "train", chunk_rows=CHUNK_ROWS)


def test_a_store_reads_back_the_split_it_was_written_from(
    train_store: SampleStore, tiny_data: InteractionData
) -> None:
    train = tiny_data.splits["train"]
    store = SampleStore.open(train_store.path, FeatureTables.of(tiny_data))
    assert store.rows == train.size and store.num_chunks == -(-train.size // CHUNK_ROWS)
    expected = SampleRows.of(tiny_data, train).columns()
    whole = store.read_rows(0, store.rows).columns()
    across = store.read_rows(150, 250).columns()  # spans chunks 1 and 2
    assert whole.keys() == expected.keys()
    for name, column in expected.items():
        assert whole[name].dtype == column.dtype
        assert np.array_equal(whole[name], column)
        assert np.array_equal(across[name], column[150:250])
        mapped = np.load(store.path / f"{name}.npy", mmap_mode="r")  # plain .npy files
        assert np.array_equal(mapped, column)


def test_the_streamed_generator_writes_the_in_memory_train_split(tmp_path: Path) -> None:
    data = generate_synthetic(TINY_WORLD, progress=False)
    reference = write_split_store(data, "train", tmp_path / "reference", chunk_rows=128)
    ordered, held_out = write_synthetic_store(
        TINY_WORLD,
        tmp_path / "ordered",
        chunk_rows=128,
        users_per_block=7,
        shuffle=False,
        progress=False,
    )
    shuffled, _ = write_synthetic_store(
        TINY_WORLD, tmp_path / "shuffled", chunk_rows=128, users_per_block=7, progress=False
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ordered", "reference", "shuffled"]

    def checksums(store: SampleStore) -> dict[str, str]:
        return {name: column.sha256 for name, column in store.manifest.columns.items()}

    assert checksums(ordered) == checksums(reference)  # byte for byte
    SampleStore.open(shuffled.path, FeatureTables.of(held_out))  # tables without train samples
    # The held-out samples and every table are generate_synthetic's.
    assert held_out.splits["train"].size == 0
    for split in ("validation", "test"):
        mine = SampleRows.of(held_out, held_out.splits[split]).columns()
        theirs = SampleRows.of(data, data.splits[split]).columns()
        for name, column in theirs.items():
            assert np.array_equal(mine[name], column), (split, name)
    for table in ("user_features", "item_features", "catalogue", "latest_histories"):
        assert np.array_equal(getattr(held_out, table), getattr(data, table)), table
    # Shuffled: the same samples (a user's timestamps are distinct), in another order, and any
    # chunk draws from the whole range of users.
    rows, expected = shuffled.read_rows(0, shuffled.rows), reference.read_rows(0, reference.rows)
    order = np.lexsort((rows.timestamps, rows.user_ids))
    assert not np.array_equal(order, np.arange(order.size))
    for name, column in expected.columns().items():
        assert np.array_equal(rows.columns()[name][order], column), name
    first_chunk_users = rows.user_ids[: shuffled.chunk_rows]
    assert np.ptp(first_chunk_users) > 0.8 * TINY_WORLD.num_users


def test_every_train_sample_once_per_epoch_in_a_new_order(
    train_store: SampleStore, tiny_data: InteractionData
) -> None:
    source = StoreSamples(train_store, BATCH, seed=3)
    train = tiny_data.splits["train"]
    orders = []
    for epoch in range(2):
        plan = list(epoch_rows(source, epoch))
        batches = list(source.epoch_batches(epoch))
        assert len(plan) == len(batches) == source.steps_per_epoch
        assert [len(b) for b in plan[:-1]] == [BATCH] * (len(plan) - 1)  # only the last is short
        order = np.concatenate(plan)
        assert np.array_equal(np.sort(order), np.arange(train_store.rows))  # each sample once
        # The batches read chunk by chunk are the in-memory batches of the same samples.
        for rows, batch in zip(plan, batches, strict=True):
            assert batches_equal(batch, make_batch(tiny_data, train[rows]))
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[0], np.arange(train_store.rows))
    again = np.concatenate(list(epoch_rows(StoreSamples(train_store, BATCH, seed=3), 1)))
    assert np.array_equal(again, orders[1])  # an epoch depends on (seed, epoch) only


def test_per_sample_feature_overrides_are_stored_and_read(
    tiny_data: InteractionData, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    n = tiny_data.labels.size
    data = replace(
        tiny_data,
        sample_user_features=rng.integers(1, 3, size=(n, tiny_data.user_features.shape[1])),
        sample_item_features=rng.integers(1, 3, size=(n, tiny_data.item_features.shape[1])),
    )
    store = write_split_store(data, "train", tmp_path / "overrides", chunk_rows=CHUNK_ROWS)
    assert {"sample_user_features", "sample_item_features"} <= store.manifest.columns.keys()
    source = StoreSamples(store, BATCH, seed=0)
    for rows, batch in zip(epoch_rows(source, 0), source.epoch_batches(0), strict=True):
        assert batches_equal(batch, make_batch(data, data.splits["train"][rows]))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_share_each_epoch_disjointly_with_equal_steps(
    train_store: SampleStore, world_size: int
) -> None:
    sources = [
        StoreSamples(train_store, BATCH, seed=7, rank=rank, world_size=world_size)
        for rank in range(world_size)
    ]
    plans = [list(epoch_rows(source, 0)) for source in sources]
    steps = sources[0].steps_per_epoch
    assert all(source.steps_per_epoch == steps for source in sources)
    assert all(len(plan) == steps for plan in plans)  # DDP: every rank the same steps
    assert len({tuple(len(b) for b in plan) for plan in plans}) == 1  # and the same batch sizes
    together = np.concatenate([np.concatenate(plan) for plan in plans])
    assert set(together.tolist()) == set(range(train_store.rows))  # covering
    bounds = map(train_store.chunk_bounds, range(train_store.num_chunks))
    chunk_sizes = [stop - start for start, stop in bounds]
    padding = sum(-(-size // world_size) * world_size - size for size in chunk_sizes)
    assert together.size - train_store.rows == padding  # disjoint but for each chunk's padding
    assert np.unique(together).size == train_store.rows


def tiled_store(data: InteractionData, path: Path, chunks: int) -> SampleStore:
    """A store of `chunks` x MEMORY_CHUNK_ROWS rows: the train samples repeated."""
    train = SampleRows.of(data, data.splits["train"])
    rows = chunks * MEMORY_CHUNK_ROWS
    with SampleStoreWriter(
        path, FeatureTables.of(data), dataset=data.name, chunk_rows=MEMORY_CHUNK_ROWS
    ) as writer:
        for start in range(0, rows, len(train)):
            writer.append(train.take(np.arange(min(len(train), rows - start))))
        return writer.commit()


def test_the_reader_holds_one_chunk_not_the_store(
    tiny_data: InteractionData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = tiled_store(tiny_data, tmp_path / "small", chunks=10)
    large = tiled_store(tiny_data, tmp_path / "large", chunks=100)  # 10x the rows
    row_bytes = sum(c.bytes for c in large.manifest.columns.values()) / large.rows
    first = next(StoreSamples(large, MEMORY_BATCH, seed=0).epoch_batches(0))
    batch_bytes = sum(
        getattr(first, n).nbytes for n in ("user_features", "history", "item_features", "labels")
    )
    unit = MEMORY_CHUNK_ROWS * row_bytes + batch_bytes
    read_sizes: list[int] = []
    read_rows = SampleStore.read_rows

    def counted_read_rows(store: SampleStore, start: int, stop: int) -> SampleRows:
        read_sizes.append(stop - start)
        return read_rows(store, start, stop)

    monkeypatch.setattr(SampleStore, "read_rows", counted_read_rows)
    peaks = {}
    for name, store in (("small", small), ("large", large)):
        source = StoreSamples(store, MEMORY_BATCH, seed=0)
        read_sizes.clear()
        tracemalloc.start()
        try:
            steps = sum(1 for _ in source.epoch_batches(0))
            peaks[name] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert steps == source.steps_per_epoch
        assert max(read_sizes) == MEMORY_CHUNK_ROWS  # the most rows one read materialised
    print(
        f"reader peak: {peaks['small'] / unit:.2f} and {peaks['large'] / unit:.2f} x (chunk + "
        f"batch) for stores of {small.rows:,} and {large.rows:,} rows"
    )
    assert peaks["small"] <= PEAK_UNITS * unit and peaks["large"] <= PEAK_UNITS * unit, peaks
    assert peaks["large"] < large.rows * row_bytes / 10


def test_training_from_a_store_reaches_the_in_memory_auc(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = generate_synthetic(TRAIN_WORLD, progress=False)
    store, held_out = write_synthetic_store(
        TRAIN_WORLD, tmp_path / "train", chunk_rows=TRAIN_CHUNK_ROWS, progress=False
    )
    assert store.num_chunks > 1
    in_memory = new_model("fit", data.schema, TINY_MODEL, TRAIN_BUDGET.seed)
    train_model(in_memory, data, TRAIN_BUDGET, progress=False)
    streamed = new_model("fit", held_out.schema, TINY_MODEL, TRAIN_BUDGET.seed)
    result = train_model(streamed, store, TRAIN_BUDGET, progress=False)
    assert result.epochs == TRAIN_BUDGET.epochs
    splits = ("validation", "test")
    memory_auc = evaluate(in_memory, data, 8192, splits=splits)
    store_auc = evaluate(streamed, held_out, 8192, splits=splits)
    print({s: (round(memory_auc[s].auc, 4), round(store_auc[s].auc, 4)) for s in splits})
    for split in splits:
        assert memory_auc[split].auc > 0.6
        assert abs(store_auc[split].auc - memory_auc[split].auc) <= AUC_TOLERANCE, split


def test_a_mismatched_or_damaged_store_is_refused(
    train_store: SampleStore, tiny_data: InteractionData, tmp_path: Path
) -> None:
    tables = FeatureTables.of(tiny_data)
    other_seed = generate_synthetic(TINY_WORLD.model_copy(update={"seed": 12}), progress=False)
    with pytest.raises(StoreError, match="other feature tables"):
        SampleStore.open(train_store.path, FeatureTables.of(other_seed))
    other_schema = generate_synthetic(
        TINY_WORLD.model_copy(update={"num_items": 301}), progress=False
    )
    with pytest.raises(StoreError, match="written for feature schema"):
        SampleStore.open(train_store.path, FeatureTables.of(other_schema))

    def damaged(name: str) -> Path:
        copy = tmp_path / name
        shutil.copytree(train_store.path, copy)
        return copy

    flipped = damaged("flipped")
    with (flipped / "labels.npy").open("r+b") as handle:
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 0xFF]))
    SampleStore.open(flipped, tables, verify=False)  # sizes and headers still agree
    with pytest.raises(StoreError, match=r"labels\.npy: sha256 mismatch"):
        SampleStore.open(flipped, tables)
    truncated = damaged("truncated")
    with (truncated / "histories.npy").open("r+b") as handle:
        handle.truncate(handle.seek(0, 2) - 8)
    with pytest.raises(StoreError, match=r"histories\.npy: \d+ bytes, expected"):
        SampleStore.open(truncated, tables, verify=False)
    missing = damaged("missing")
    (missing / "item_ids.npy").unlink()
    with pytest.raises(StoreError, match=r"item_ids\.npy: listed in the manifest but missing"):
        SampleStore.open(missing, tables)
    future = damaged("future")
    manifest = json.loads((future / "store.json").read_text())
    (future / "store.json").write_text(json.dumps(manifest | {"format_version": 99}))
    with pytest.raises(StoreError, match="store format 99, this code reads 1"):
        SampleStore.open(future, tables)
    with pytest.raises(StoreError, match="not a sample store"):
        SampleStore.open(tmp_path, tables)


def test_the_writer_refuses_bad_rows_and_leaves_nothing_behind(
    tiny_data: InteractionData, tmp_path: Path
) -> None:
    tables = FeatureTables.of(tiny_data)
    rows = SampleRows.of(tiny_data, tiny_data.splits["train"][:10])
    unknown_item = replace(rows, item_ids=rows.item_ids + tiny_data.item_features.shape[0])
    with (
        pytest.raises(StoreError, match=r"item_ids outside \[0, 301\)"),
        SampleStoreWriter(
            tmp_path / "bad", tables, dataset="synthetic", chunk_rows=CHUNK_ROWS
        ) as writer,
    ):
        writer.append(rows)
        writer.append(unknown_item)
    with (
        pytest.raises(StoreError, match="5 of the 10 preallocated rows written"),
        SampleStoreWriter(
            tmp_path / "holes", tables, dataset="synthetic", chunk_rows=CHUNK_ROWS, rows=10
        ) as writer,
    ):
        writer.write_at(0, rows.take(np.arange(5)))
        writer.commit()
    assert list(tmp_path.iterdir()) == []  # no store and no temp directory
