"""The job's training data: the dataset named by PRERANK_DATASET, its training samples in memory or
in a sample store, and the fingerprint of what the models learn from."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from contextlib import ExitStack
from pathlib import Path

from offline_jobs.data.adapters import ensure_shipped_tables, source_folders
from offline_jobs.data.amazon import load_amazon
from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.movielens import load_movielens_1m, load_movielens_100k
from offline_jobs.data.spec import DatasetSpec, is_spec_path, load_spec
from offline_jobs.data.spec_data import load_spec_data
from offline_jobs.data.stream.store import SampleStore
from offline_jobs.data.synthetic import generate_synthetic, write_synthetic_store
from offline_jobs.data.taobao import load_taobao
from offline_jobs.settings import JobSettings

log = logging.getLogger(__name__)


def read_dataset_spec(settings: JobSettings, path: Path) -> DatasetSpec:
    """The spec at `path`; a shipped spec's tables are converted first from the built-in
    dataset's files when missing (`adapters.ensure_shipped_tables`)."""
    spec = load_spec(path)
    if ensure_shipped_tables(spec, source_folders(settings)):
        log.info("converted the original files of %s into its tables", path)
    return spec


def load_dataset(settings: JobSettings, *, progress: bool = True) -> InteractionData:
    if is_spec_path(settings.dataset):
        return load_spec_data(read_dataset_spec(settings, Path(settings.dataset)))
    if settings.dataset == "ml-1m":
        return load_movielens_1m(settings.ml1m, progress=progress)
    if settings.dataset == "ml-100k":
        return load_movielens_100k(settings.ml100k, progress=progress)
    if settings.dataset == "amazon":
        return load_amazon(settings.amazon, progress=progress)
    if settings.dataset == "taobao":
        return load_taobao(settings.taobao, progress=progress)
    return generate_synthetic(settings.synthetic, progress=progress)


def load_training_data(
    settings: JobSettings, stack: ExitStack, *, progress: bool = True
) -> tuple[InteractionData, SampleStore | None]:
    """The dataset, and with PRERANK_TRAIN_STORE its training samples in a sample store instead
    of memory (in a scratch directory under the artifacts, removed when `stack` closes)."""
    if not settings.train_store:
        return load_dataset(settings, progress=progress), None
    if settings.dataset != "synthetic":
        raise ValueError(
            f"PRERANK_TRAIN_STORE: the {settings.dataset} loader reads its files whole; only the "
            "synthetic generator writes its samples to a store (offline_jobs/data/stream/)"
        )
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(
        stack.enter_context(
            tempfile.TemporaryDirectory(prefix=".train-store-", dir=settings.artifacts_dir)
        )
    )
    store, data = write_synthetic_store(
        settings.synthetic,
        scratch / "train",
        chunk_rows=settings.train_store_chunk_rows,
        progress=progress,
    )
    log.info("training samples: %d rows in the store at %s", store.rows, store.path)
    return data, store


def training_fingerprint(data: InteractionData, store: SampleStore | None) -> str:
    """What the models are trained and evaluated on: the data's fingerprint, and the store's
    column checksums when the training samples are in a store rather than in `data`."""
    if store is None:
        return data.fingerprint()
    digest = hashlib.sha256(data.fingerprint().encode())
    for name, column in sorted(store.manifest.columns.items()):
        digest.update(f"{name}:{column.sha256}".encode())
    return digest.hexdigest()
