"""The main offline job: data -> train -> evaluate -> export -> bundle -> publish, with reuse.

A bundle whose config fingerprint matches the current settings and whose checksums verify is
reused, so a second run trains nothing; a version already active in Redis is not re-published.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from contextlib import ExitStack
from pathlib import Path

import torch

from offline_jobs.build import (
    build_bundle,
    config_fingerprint,
    contribute_to_bundle,
    split_sizes,
)
from offline_jobs.data.amazon import load_amazon
from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.movielens import load_movielens_1m, load_movielens_100k
from offline_jobs.data.stream import SampleStore
from offline_jobs.data.synthetic import generate_synthetic, write_synthetic_store
from offline_jobs.data.taobao import load_taobao
from offline_jobs.distributed import (
    DistributedWorld,
    broadcast_from_main,
    leave_distributed,
    start_distributed,
)
from offline_jobs.evaluate import evaluate
from offline_jobs.publish import publish_bundle, publish_user_features
from offline_jobs.settings import JobSettings
from offline_jobs.train import new_model, train_model
from prerank_contract.bundle import BundleError, point_current, read_manifest, verify_bundle_dir
from prerank_contract.manifest import Manifest, ModelMetrics
from prerank_contract.redis_client import REDIS_ERRORS, RedisClient
from prerank_model.models import MODELS

log = logging.getLogger(__name__)


def load_dataset(settings: JobSettings, *, progress: bool = True) -> InteractionData:
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
            "synthetic generator writes its samples to a store (offline_jobs/data/stream.py)"
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


def find_reusable_bundle(bundles_dir: Path, fingerprint: str) -> tuple[Path, Manifest] | None:
    """The newest bundle built from the same fingerprint whose checksums verify."""
    if not bundles_dir.is_dir():
        return None
    candidates = []
    for path in bundles_dir.iterdir():
        if path.name.startswith(".") or path.is_symlink() or not path.is_dir():
            continue
        try:
            if read_manifest(path).config_fingerprint == fingerprint:
                candidates.append((verify_bundle_dir(path).created_at, path))
        except BundleError as exc:
            log.warning("not reusing %s: %s", path, exc)
    if not candidates:
        return None
    path = max(candidates)[1]
    return path, read_manifest(path)


def redis_client(settings: JobSettings) -> RedisClient | None:
    """A connected client, or None (with one line saying so) when Redis does not answer."""
    try:
        return settings.connect_redis()
    except REDIS_ERRORS as exc:
        print(
            f"Redis at {settings.redis_url} not reachable ({exc.__class__.__name__}): "
            f"not publishing; the service serves from {settings.bundles_dir / 'current'}"
        )
        return None


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
    for name in settings.models:
        if name not in MODELS:
            raise ValueError(f"PRERANK_MODELS: unknown model {name!r}; known: {sorted(MODELS)}")
    if settings.serve_model not in settings.models:
        raise ValueError(
            f"PRERANK_SERVE_MODEL={settings.serve_model!r} is not in "
            f"PRERANK_MODELS={list(settings.models)}"
        )
    dataset_fp = training_fingerprint(data, store)
    fingerprints = {
        name: config_fingerprint(
            settings, name, dataset_fp, 1 if world is None else world.world_size
        )
        for name in settings.models
    }
    if not retrain:
        found = {
            name: find_reusable_bundle(settings.bundles_dir, fp)
            for name, fp in fingerprints.items()
        }
        reuse = all(found.values())
        if world is not None:  # rank 0 decides, or the ranks could disagree and hang
            reuse = bool(broadcast_from_main(reuse))
            if reuse and not world.is_main:
                return {}
        if reuse:
            log.info("reusing bundles: %s", {n: str(f[0]) for n, f in found.items() if f})
            return {name: bundle for name, bundle in found.items() if bundle}
    threads = settings.torch_threads
    if world is not None:  # the ranks of one machine share its cores
        threads = max(1, threads // world.local_world_size)
    torch.set_num_threads(threads)
    trained, metrics = {}, {}
    for name in settings.models:
        model = new_model(name, data.schema, settings.model, settings.train.seed)
        samples = data if store is None else store
        result = train_model(model, samples, settings.train, progress=progress, world=world)
        trained[name] = model  # every rank: each precomputes a slice of the item table
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
    if world is not None and not world.is_main:
        for model in trained.values():  # in rank 0's order: one exchange per bundle
            contribute_to_bundle(model, data, settings, world)
        return {}
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
            samples=split_sizes(data, None if store is None else store.rows),
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
    with ExitStack() as stack:  # a training store lives as long as the job
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
    if publish and (client := redis_client(settings)) is not None:
        publish_user_features(
            client, settings.keys, data, settings.feature_store_batch_size, progress=progress
        )
        publish_version(settings, client, served_path, progress=progress)
    return bundles


def publish_version(
    settings: JobSettings,
    client: RedisClient,
    bundle_dir: Path,
    *,
    activate: bool = True,
    override_reason: str | None = None,
    progress: bool = True,
) -> None:
    result = publish_bundle(
        client,
        settings.keys,
        bundle_dir,
        chunk_bytes=settings.publish_chunk_bytes,
        keep_versions=settings.publish_keep_versions,
        orphan_min_idle_seconds=settings.publish_orphan_min_idle_seconds,
        gate=settings.gate,
        activate=activate,
        override_reason=override_reason,
        progress=progress,
    )
    print(f"published {result.version} to {settings.redis_url} ({result.action})")


def require_redis(settings: JobSettings, purpose: str) -> RedisClient:
    """A connected client; a CLI error naming `purpose` when Redis does not answer."""
    client = redis_client(settings)
    if client is None:
        raise ValueError(f"cannot {purpose}: Redis at {settings.redis_url} not reachable")
    return client


def publish_existing(
    settings: JobSettings,
    bundle_dir: Path,
    *,
    activate: bool = True,
    override_reason: str | None = None,
) -> None:
    if not bundle_dir.is_dir():
        raise FileNotFoundError(f"{bundle_dir}: not a bundle directory")
    client = require_redis(settings, f"publish {bundle_dir}")
    publish_version(
        settings, client, bundle_dir, activate=activate, override_reason=override_reason
    )
