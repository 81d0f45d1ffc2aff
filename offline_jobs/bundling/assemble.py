"""Turn a trained model into a bundle: precompute, ONNX export with parity, manifest."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import onnx
import onnxruntime
import torch

from model_export.onnx_export import ParitySample, check_parity, export_graphs
from offline_jobs.bundling.fingerprint import code_fingerprint, git_commit
from offline_jobs.bundling.precompute import ItemTable, precompute_items, precompute_share
from offline_jobs.bundling.writer import write_bundle
from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.distributed import DistributedWorld
from offline_jobs.settings import JobSettings
from prerank_contract.manifest import (
    FAISS_INDEX_FILE,
    META_MATRIX_FILE,
    DatasetInfo,
    FrameworkVersions,
    Manifest,
    ModelMetrics,
)
from prerank_model.models.base import PrerankModel

log = logging.getLogger(__name__)


def parity_sample(
    model: PrerankModel,
    data: InteractionData,
    item_heads: np.ndarray,
    meta_index: np.ndarray,
    users: int,
    items: int,
) -> ParitySample:
    """Real users from the test split (one sample each) and at most `items` precomputed item
    rows, spread evenly over the catalogue (every row when it has no more): parity checks that
    the graphs compute what the model computes, which a spread of rows shows as well as all of
    them, at a cost that does not grow with the catalogue."""
    test = data.splits["test"]
    _, first = np.unique(data.user_ids[test], return_index=True)
    batch = make_batch(data, test[np.sort(first)[:users]])
    rows = np.unique(np.linspace(0, item_heads.shape[0] - 1, num=items).astype(np.int64))
    if rows.size >= item_heads.shape[0]:
        rows = np.arange(item_heads.shape[0])
    return ParitySample(
        batch.user_features,
        batch.history,
        np.ascontiguousarray(item_heads[rows]),
        meta_index[rows].astype(np.int64),
    )


def framework_versions() -> FrameworkVersions:
    """The versions of the libraries that train, export and check the bundle in this process."""
    return FrameworkVersions(
        torch=str(torch.__version__),
        onnx=onnx.__version__,
        onnxruntime=onnxruntime.__version__,
        numpy=np.__version__,
    )


def run_config(settings: JobSettings, data: InteractionData) -> dict[str, object]:
    """What the manifest records of the run's configuration (JSON values only)."""
    return {
        "model": settings.model.model_dump(mode="json"),
        "train": settings.train.model_dump(mode="json"),
        "models": list(settings.models),
        "code_fingerprint": code_fingerprint(),
        "data": json.loads(json.dumps(data.details, default=str)),
    }


def write_meta_matrix(table: ItemTable, bundle_dir: Path) -> dict[str, float]:
    """Write the meta matrix and its FAISS index into the bundle when the model has one; return
    the item table's diagnostics for the manifest."""
    diagnostics: dict[str, float] = {
        "meta_vectors_used": float(np.count_nonzero(table.meta_counts)),
    }
    if table.soft_hard_cosine is not None:
        diagnostics["soft_hard_query_cosine"] = table.soft_hard_cosine
    if table.meta_matrix is not None and table.faiss_index is not None:
        np.save(bundle_dir / META_MATRIX_FILE, table.meta_matrix)
        faiss.write_index(table.faiss_index, str(bundle_dir / FAISS_INDEX_FILE))
    return diagnostics


def split_sizes(data: InteractionData, train_rows: int | None = None) -> dict[str, int]:
    """Samples per split; `train_rows` replaces the train split's when the training samples
    live in a sample store rather than in `data`."""
    sizes = {split: int(indices.size) for split, indices in data.splits.items()}
    if train_rows is not None:
        sizes["train"] = train_rows
    return sizes


def build_bundle(
    model: PrerankModel,
    metrics: ModelMetrics,
    comparison: dict[str, ModelMetrics],
    data: InteractionData,
    settings: JobSettings,
    fingerprint: str,
    *,
    progress: bool = True,
    world: DistributedWorld | None = None,
    samples: dict[str, int] | None = None,
) -> tuple[Path, Manifest]:
    """Precompute items into the bundle's temp directory, export and check ONNX, and write the
    bundle atomically. `samples`: the size of each split, when they are not all in `data`
    (training samples read from a sample store); default: `data`'s.

    Under torchrun (`world`) this runs on rank 0 while every other rank runs
    `contribute_to_bundle` for the same model: each rank precomputes its slice of the item table
    into this bundle's files, and rank 0 alone writes the rest once all slices are in.
    """
    model.eval()
    created = datetime.now(UTC)
    version = f"{model.name}-{created:%Y%m%dT%H%M%S%fZ}-{fingerprint[:8]}"

    def fill(tmp: Path) -> Manifest:
        table = precompute_items(
            model,
            data.catalogue,
            data.item_features,
            settings.precompute_batch_size,
            tmp,
            progress=progress,
            world=world,
        )
        diagnostics = write_meta_matrix(table, tmp)
        sample = parity_sample(
            model,
            data,
            table.item_heads,
            table.meta_index,
            settings.parity_users,
            settings.parity_items,
        )
        graphs = export_graphs(model, sample, tmp)
        parity = check_parity(model, sample, tmp, settings.parity_tolerance)
        vocabulary = None if data.vocabulary is None else data.vocabulary.write(tmp)
        return Manifest(
            model_name=model.name,
            kind=model.kind,
            version=version,
            created_at=created.isoformat(),
            git_commit=git_commit(),
            frameworks=framework_versions(),
            dataset=DatasetInfo(
                name=data.name,
                fingerprint=data.fingerprint(),
                users=data.num_users,
                items=data.num_items,
                samples=samples or split_sizes(data),
            ),
            feature_schema=data.schema,
            config=run_config(settings, data),
            config_fingerprint=fingerprint,
            seed=settings.train.seed,
            metrics=metrics,
            comparison=comparison,
            diagnostics=diagnostics,
            parity=parity,
            parity_tolerance=settings.parity_tolerance,
            graphs=graphs,
            item_count=int(table.item_ids.size),
            num_meta_queries=model.num_meta_queries,
            files={},
            vocabulary=vocabulary,
        )

    path, manifest = write_bundle(settings.bundles_dir, version, fill)
    log.info("wrote bundle %s (parity %s)", path, manifest.parity)
    return path, manifest


def contribute_to_bundle(
    model: PrerankModel, data: InteractionData, settings: JobSettings, world: DistributedWorld
) -> None:
    """A rank other than 0 of a torchrun job: precompute this rank's slice of the item table of
    the bundle that rank 0's `build_bundle` is writing for `model` (the same trained weights)."""
    precompute_share(model, data.item_features, settings.precompute_batch_size, world)
