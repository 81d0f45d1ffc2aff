"""The main offline job, stage by stage: data (`data/`) -> training (`training/`) -> bundle
(`bundling/`: precompute, ONNX export, parity, manifest) -> release (`release/`: publish).

A bundle whose config fingerprint matches the current settings and whose checksums verify is
reused, so a second run trains nothing; a version already active in Redis is not re-published.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from pathlib import Path

import torch

from offline_jobs.bundling.assemble import (
    build_bundle,
    contribute_to_bundle,
    split_sizes,
)
from offline_jobs.bundling.fingerprint import config_fingerprint, find_reusable_bundle
from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.sources import load_training_data, training_fingerprint
from offline_jobs.data.stream.store import SampleStore
from offline_jobs.distributed import (
    DistributedWorld,
    broadcast_from_main,
    leave_distributed,
    start_distributed,
)
from offline_jobs.release.commands import publish_feature_store, publish_version, redis_client
from offline_jobs.settings import JobSettings
from offline_jobs.training.evaluate import evaluate
from offline_jobs.training.loop import new_model, train_model
from prerank_contract.bundle import point_current
from prerank_contract.manifest import Manifest, ModelMetrics
from prerank_model.models import MODELS
from prerank_model.models.base import PrerankModel

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000


def check_models(settings: JobSettings) -> None:
    """Every name of PRERANK_MODELS is a known model, and the served one is among them."""
    for name in settings.models:
        if name not in MODELS:
            raise ValueError(f"PRERANK_MODELS: unknown model {name!r}; known: {sorted(MODELS)}")
    if settings.serve_model not in settings.models:
        raise ValueError(
            f"PRERANK_SERVE_MODEL={settings.serve_model!r} is not in "
            f"PRERANK_MODELS={list(settings.models)}"
        )


def reusable_bundles(
    settings: JobSettings, fingerprints: dict[str, str], world: DistributedWorld | None
) -> dict[str, tuple[Path, Manifest]] | None:
    """Every model's bundle built from the same fingerprint, or None when one is missing (then
    all are trained again, so their manifests compare models trained together). Under torchrun
    rank 0 decides, or the ranks could disagree and hang; the other ranks get {}."""
    found = {
        name: find_reusable_bundle(settings.bundles_dir, fp) for name, fp in fingerprints.items()
    }
    reuse = all(found.values())
    if world is not None:
        reuse = bool(broadcast_from_main(reuse))
        if reuse and not world.is_main:
            return {}
    if not reuse:
        return None
    log.info("reusing bundles: %s", {n: str(f[0]) for n, f in found.items() if f})
    return {name: bundle for name, bundle in found.items() if bundle}


def train_and_evaluate(
    settings: JobSettings,
    data: InteractionData,
    store: SampleStore | None,
    world: DistributedWorld | None,
    *,
    progress: bool,
) -> tuple[dict[str, PrerankModel], dict[str, ModelMetrics]]:
    """Every model trained with the same budget and seed; metrics on rank 0 only (every rank
    keeps its model: each precomputes a slice of the item table)."""
    threads = settings.torch_threads
    if world is not None:  # the ranks of one machine share its cores
        threads = max(1, threads // world.local_world_size)
    torch.set_num_threads(threads)
    trained, metrics = {}, {}
    for name in settings.models:
        model = new_model(name, data.schema, settings.model, settings.train.seed)
        samples = data if store is None else store
        result = train_model(model, samples, settings.train, progress=progress, world=world)
        trained[name] = model
        if world is not None and not world.is_main:
            continue
        splits = evaluate(model, data, settings.train.eval_batch_size)
        metrics[name] = ModelMetrics(
            splits=splits, train_seconds=round(result.train_seconds, 2), epochs=result.epochs
        )
        print(
            f"{name:>10}: test AUC {splits['test'].auc:.4f}  logloss {splits['test'].logloss:.4f}"
            f"  (validation AUC {splits['validation'].auc:.4f}; {result.train_seconds:.0f} s)"
        )
    return trained, metrics


def build_all(
    settings: JobSettings,
    data: InteractionData,
    *,
    retrain: bool,
    progress: bool,
    world: DistributedWorld | None = None,
    store: SampleStore | None = None,
) -> dict[str, tuple[Path, Manifest]]:
    """Train and evaluate every model of `settings.models` on the same data and budget, then
    write one bundle each (every manifest also records the others' metrics).

    Under torchrun (`world`), every rank trains its DDP replica; rank 0 alone evaluates; every
    rank precomputes its slice of each bundle's item table, and rank 0 alone writes the rest of
    each bundle; the other ranks return {} once their slices are in."""
    check_models(settings)
    dataset_fp = training_fingerprint(data, store)
    ranks = 1 if world is None else world.world_size
    fingerprints = {
        name: config_fingerprint(settings, name, dataset_fp, ranks) for name in settings.models
    }
    if not retrain and (found := reusable_bundles(settings, fingerprints, world)) is not None:
        return found
    trained, metrics = train_and_evaluate(settings, data, store, world, progress=progress)
    if world is not None and not world.is_main:
        for model in trained.values():  # in rank 0's order: one exchange per bundle
            contribute_to_bundle(model, data, settings, world)
        return {}
    samples = split_sizes(data, None if store is None else store.rows)
    return {
        name: build_bundle(
            model,
            metrics[name],
            {other: m for other, m in metrics.items() if other != name},
            data,
            settings,
            fingerprints[name],
            progress=progress,
            world=world,
            samples=samples,
        )
        for name, model in trained.items()
    }


def run_pipeline(
    settings: JobSettings, *, retrain: bool = False, publish: bool = True, progress: bool = True
) -> dict[str, tuple[Path, Manifest]]:
    """The main job. Under `torchrun --nproc_per_node N` every rank loads the same (seeded) data,
    trains its DDP replica and precomputes its slice of every bundle's item table; rank 0 alone
    evaluates, writes the rest of the bundles and publishes, the others return {} once their
    slices are in."""
    world = start_distributed()
    try:
        if world is not None and not world.is_main:
            progress = False
            logging.getLogger().setLevel(logging.WARNING)
        return run_job(settings, retrain=retrain, publish=publish, progress=progress, world=world)
    finally:
        leave_distributed()  # every rank together: the others wait here for rank 0's bundles


def run_job(
    settings: JobSettings,
    *,
    retrain: bool,
    publish: bool,
    progress: bool,
    world: DistributedWorld | None,
) -> dict[str, tuple[Path, Manifest]]:
    main = world is None or world.is_main
    # Before training: a TLS or settings mistake stops the job now, not after the training
    # (an unreachable Redis only skips publishing, said in one line).
    client = redis_client(settings) if publish and main else None
    with ExitStack() as stack:  # a training store lives as long as the job
        data_read_ms = time.time_ns() // NS_PER_MS  # events after this are not in the data
        data, store = load_training_data(settings, stack, progress=progress)
        log.info(
            "dataset %s: %d users, %d items, samples %s",
            data.name,
            data.num_users,
            data.num_items,
            split_sizes(data, None if store is None else store.rows),
        )
        bundles = build_all(
            settings, data, retrain=retrain, progress=progress, world=world, store=store
        )
    if not bundles:  # a rank other than 0 of a torchrun job: its part is done
        return bundles
    served_path, _ = bundles[settings.serve_model]
    point_current(settings.bundles_dir, served_path)
    for _, manifest in bundles.values():
        test = manifest.metrics.splits["test"]
        print(
            f"bundle {manifest.version}: test AUC {test.auc:.4f} logloss {test.logloss:.4f} "
            f"parity {manifest.parity}"
        )
    if client is not None:
        served_version = bundles[settings.serve_model][1].version
        publish_feature_store(
            settings, client, data, served_version, data_read_ms=data_read_ms, progress=progress
        )
        publish_version(settings, client, served_path, progress=progress)
    return bundles
