"""``python -m research.train_memory`` (``make bench-train-memory``): peak memory of training one
epoch from an on-disk sample store, against training on the same samples held in memory.

A synthetic world with about `train_memory_samples[0]` training samples is generated straight to
a store (`write_synthetic_store`, block by block of users); each measured size is a store of
that many rows, the generated rows repeated (as `bench-scale` tiles a catalogue: only the size
matters here). Every measurement is a fresh child process (`--child`) that loads what it needs,
trains FIT for one epoch and reports its own peak RSS (`ru_maxrss`): in memory, every column
read into an `InteractionData` and trained through its train split; from the store, the store
opened (every sha256 checked) and read one chunk at a time. Both children hold the same feature
tables and model. Writes docs/benchmarks/train_memory.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import psutil
import torch
from pydantic import Field

from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.stream.format import DEFAULT_CHUNK_ROWS, FeatureTables
from offline_jobs.data.stream.store import SampleStore
from offline_jobs.data.stream.store_writer import SampleStoreWriter
from offline_jobs.data.synthetic import SyntheticConfig, write_synthetic_store
from offline_jobs.training.loop import TrainConfig, new_model, train_model
from prerank_contract.bundle import write_text_atomically
from prerank_contract.features import FeatureSchema
from prerank_contract.settings import CommonSettings, configure_logging, load_settings
from prerank_model.config import ModelConfig
from research.settings import REPO_ROOT

log = logging.getLogger("research.train_memory")

MIB = 2**20
KIB = 2**10  # ru_maxrss is in KiB on Linux
ChildMode = Literal["generate", "memory", "store"]
SCHEMA_FILE, USER_TABLE_FILE, ITEM_TABLE_FILE = "schema.json", "user_features.npy", "items.npy"

# A small FIT: one epoch over millions of samples stays within minutes on two cores, and the
# model's few MiB are the same in both children (only the samples' memory differs).
BENCH_MODEL = ModelConfig(
    embedding_dim=8,
    tower_hidden=(32,),
    head_dim=8,
    user_heads=2,
    item_heads=2,
    num_meta_queries=4,
    din_hidden=(16,),
    lss_row_dim=4,
    lss_col_dim=3,
)


class TrainMemorySettings(CommonSettings):
    """The sizes, the world and the training of the benchmark, and where the report goes."""

    train_memory_samples: tuple[int, ...] = Field(
        default=(1_000_000, 8_000_000),
        min_length=1,
        description="training samples per measured store (the smallest is generated, the "
        "larger ones repeat its rows)",
    )
    train_memory_world: SyntheticConfig = Field(
        default=SyntheticConfig(),
        description="the generated world; num_users is set to give the smallest size",
    )
    train_memory_chunk_rows: int = Field(
        default=DEFAULT_CHUNK_ROWS, ge=1, description="rows per chunk of the stores"
    )
    train_memory_model: ModelConfig = Field(
        default=BENCH_MODEL, description="the FIT trained (small: one epoch must stay short)"
    )
    train_memory_batch_size: int = Field(default=4096, ge=1, description="training batch")
    train_memory_torch_threads: int = Field(default=1, ge=1, description="torch intra-op threads")
    train_memory_seed: int = Field(default=0, description="seed of the model and the shuffles")
    train_memory_child_timeout_seconds: float = Field(
        default=1200.0, gt=0, description="longest run of one measuring child process"
    )
    train_memory_report: Path = Field(
        default=REPO_ROOT / "docs" / "benchmarks" / "train_memory.md", description="report path"
    )


@dataclass(frozen=True)
class ChildResult:
    """What one child process measured: its RSS once the samples are loaded (or the store
    opened) and its peak over the whole run, both in MiB."""

    mode: str
    rows: int
    ready_rss_mib: float
    peak_rss_mib: float
    seconds: float
    steps: int


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB / MIB


def current_rss_mib() -> float:
    return psutil.Process().memory_info().rss / MIB


def world_for(settings: TrainMemorySettings) -> SyntheticConfig:
    """The configured world with enough users for about `min(train_memory_samples)` training
    samples (every user has `events_per_user` samples; validation and test take their share)."""
    world = settings.train_memory_world
    train_share = (1 - world.test_fraction) * (1 - world.validation_fraction)
    users = math.ceil(min(settings.train_memory_samples) / (world.events_per_user * train_share))
    return world.model_copy(update={"num_users": users})


def save_tables(tables: FeatureTables, directory: Path) -> None:
    (directory / SCHEMA_FILE).write_text(tables.schema.model_dump_json())
    np.save(directory / USER_TABLE_FILE, tables.user_features)
    np.save(directory / ITEM_TABLE_FILE, tables.item_features)


def load_tables(directory: Path, history_length: int) -> FeatureTables:
    return FeatureTables(
        FeatureSchema.model_validate_json((directory / SCHEMA_FILE).read_text()),
        np.load(directory / USER_TABLE_FILE),
        np.load(directory / ITEM_TABLE_FILE),
        history_length,
    )


def in_memory_data(store: SampleStore) -> InteractionData:
    """Every column of `store` read into memory, as data whose train split is every row."""
    tables = store.tables

    def column(name: str) -> np.ndarray:
        return np.load(store.path / store.manifest.columns[name].file)

    empty = np.zeros(0, dtype=np.int64)
    return InteractionData(
        name=store.manifest.dataset,
        schema=tables.schema,
        user_features=tables.user_features,
        item_features=tables.item_features,
        catalogue=np.arange(1, tables.item_features.shape[0], dtype=np.int64),
        latest_histories=np.zeros(
            (tables.user_features.shape[0], tables.history_length), dtype=np.int64
        ),
        user_ids=column("user_ids"),
        item_ids=column("item_ids"),
        labels=column("labels"),
        timestamps=column("timestamps"),
        histories=column("histories"),
        splits={"train": np.arange(store.rows), "validation": empty, "test": empty},
    )


def run_child(mode: ChildMode, scratch: Path, store_path: Path) -> ChildResult:
    """One measurement, inside the child process."""
    settings = load_settings(TrainMemorySettings)
    torch.set_num_threads(settings.train_memory_torch_threads)
    started = time.perf_counter()
    if mode == "generate":
        store, _ = write_synthetic_store(
            world_for(settings),
            store_path,
            chunk_rows=settings.train_memory_chunk_rows,
            progress=False,
        )
        save_tables(store.tables, scratch)
        return ChildResult(
            mode, store.rows, current_rss_mib(), peak_rss_mib(), time.perf_counter() - started, 0
        )
    tables = load_tables(scratch, settings.train_memory_world.max_history)
    store = SampleStore.open(store_path, tables)
    data: InteractionData | SampleStore = in_memory_data(store) if mode == "memory" else store
    ready = current_rss_mib()
    model = new_model(
        "fit", store.tables.schema, settings.train_memory_model, settings.train_memory_seed
    )
    budget = TrainConfig(
        seed=settings.train_memory_seed, epochs=1, batch_size=settings.train_memory_batch_size
    )
    started = time.perf_counter()
    train_model(model, data, budget, progress=False)
    seconds = time.perf_counter() - started
    return ChildResult(
        mode, store.rows, ready, peak_rss_mib(), seconds, math.ceil(store.rows / budget.batch_size)
    )


def measure(
    settings: TrainMemorySettings, mode: ChildMode, scratch: Path, store_path: Path
) -> ChildResult:
    """Run one child process (same interpreter, same PRERANK_* settings) and read its result."""
    command = [sys.executable, "-m", "research.train_memory", "--child", mode]
    command += ["--scratch", str(scratch), "--store", str(store_path)]
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=settings.train_memory_child_timeout_seconds,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {mode} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = ChildResult(**json.loads(done.stdout.strip().splitlines()[-1]))
    log.info("%s: %s", mode, result)
    return result


def tiled_store(base: SampleStore, path: Path, rows: int) -> SampleStore:
    """A store of `rows` rows: the rows of `base` repeated, one chunk at a time."""
    with SampleStoreWriter(
        path, base.tables, dataset=base.manifest.dataset, chunk_rows=base.chunk_rows
    ) as writer:
        while writer.rows < rows:
            for chunk in range(base.num_chunks):
                start, stop = base.chunk_bounds(chunk)
                writer.append(base.read_rows(start, min(stop, start + rows - writer.rows)))
                if writer.rows == rows:
                    break
        return writer.commit()


@dataclass(frozen=True)
class SizeRow:
    rows: int
    store_mib: float
    memory: ChildResult
    store: ChildResult


def report(settings: TrainMemorySettings, generated: ChildResult, rows: list[SizeRow]) -> str:
    world = world_for(settings)
    lines = [
        "# Training memory: from a sample store vs in memory",
        "",
        "Generated by `python -m research.train_memory` (`make bench-train-memory`). A synthetic "
        f"world of {world.num_users:,} users x {world.events_per_user} events was written "
        f"straight to a store ({generated.rows:,} training samples, `write_synthetic_store`); "
        "each size below is a store of that many rows, the generated rows repeated. Each figure "
        "is a fresh child process training FIT (a small config, "
        f"batch {settings.train_memory_batch_size:,}, "
        f"{settings.train_memory_torch_threads} torch thread(s)) for one epoch: **in memory**, "
        "every column loaded into an `InteractionData`; **store**, read one chunk of "
        f"{settings.train_memory_chunk_rows:,} rows at a time (`StoreSamples`). Peak RSS is the "
        "child's `ru_maxrss`; ready RSS is its RSS once the samples are loaded or the store is "
        "opened and every sha256 checked, before the first step. Both hold the same feature "
        "tables and model.",
        "",
        "| training samples | store MiB | in memory: ready / peak RSS MiB | store: ready / peak "
        "RSS MiB | peak ratio (memory / store) | epoch s (memory / store) |",
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.rows:,} | {r.store_mib:,.0f} | {r.memory.ready_rss_mib:,.0f} / "
            f"{r.memory.peak_rss_mib:,.0f} | {r.store.ready_rss_mib:,.0f} / "
            f"{r.store.peak_rss_mib:,.0f} | {r.memory.peak_rss_mib / r.store.peak_rss_mib:.2f} | "
            f"{r.memory.seconds:.0f} / {r.store.seconds:.0f} |"
        )
    small, large = rows[0], rows[-1]
    scale = large.rows / small.rows
    lines += [
        "",
        f"From {small.rows:,} to {large.rows:,} samples ({scale:.0f}x), the peak grows "
        f"{large.memory.peak_rss_mib / small.memory.peak_rss_mib:.2f}x in memory and "
        f"{large.store.peak_rss_mib / small.store.peak_rss_mib:.2f}x from the store "
        f"({large.memory.peak_rss_mib - small.memory.peak_rss_mib:+,.0f} MiB against "
        f"{large.store.peak_rss_mib - small.store.peak_rss_mib:+,.0f} MiB).",
        "",
        f"Generating the {generated.rows:,}-sample store took {generated.seconds:.0f} s at a "
        f"peak RSS of {generated.peak_rss_mib:,.0f} MiB (the tables, a block of users, a chunk, "
        "and the validation and test samples, which stay in memory for evaluation).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.train_memory", description=__doc__)
    parser.add_argument("--child", choices=("generate", "memory", "store"), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(asdict(run_child(args.child, args.scratch, args.store))))
        return 0
    configure_logging(logging.INFO)
    settings = load_settings(TrainMemorySettings)
    rows = []
    with tempfile.TemporaryDirectory(prefix="train-memory-") as scratch_dir:
        scratch = Path(scratch_dir)
        base_path = scratch / "generated"
        generated = measure(settings, "generate", scratch, base_path)
        base = SampleStore.open(
            base_path, load_tables(scratch, settings.train_memory_world.max_history)
        )
        for size in sorted(settings.train_memory_samples):
            log.info("%d samples", size)
            store = tiled_store(base, scratch / f"store-{size}", size)
            store_mib = sum(c.bytes for c in store.manifest.columns.values()) / MIB
            memory = measure(settings, "memory", scratch, store.path)
            streamed = measure(settings, "store", scratch, store.path)
            rows.append(SizeRow(size, store_mib, memory, streamed))
    text = report(settings, generated, rows)
    write_text_atomically(settings.train_memory_report, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
