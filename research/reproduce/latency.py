"""`/prerank` latency of the measured models through the real service (uvicorn, ONNX Runtime,
Redis), with bodies drawn from the dataset's users and catalogue: the ids the caller knows
(a dataset spec's raw ids, the built-in loaders' own)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from tqdm import tqdm

from offline_jobs.bundling.assemble import build_bundle
from offline_jobs.bundling.fingerprint import config_fingerprint, find_reusable_bundle
from offline_jobs.data.dataset import InteractionData
from offline_jobs.release.publish import publish_bundle, publish_user_features
from offline_jobs.training.evaluate import evaluate
from prerank_contract.gate import GateConfig
from prerank_contract.http import DEADLINE_HEADER
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import ModelMetrics
from prerank_contract.redis_client import RedisClient
from research.http_client import PERCENTILES, REQUEST_TIMEOUT_SECONDS, closed_loop
from research.reproduce.plan import RunSpec
from research.reproduce.runs import Runs
from research.service_process import ServiceProcess

# Reproduction bundles are measured, not judged: the gate is the release's business.
OPEN_GATE = GateConfig(min_auc=0.0, max_auc_drop=1.0)


def caller_ids(data: InteractionData) -> tuple[np.ndarray, np.ndarray]:
    """The id a caller sends for each internal user and item (row = internal id, row 0 unused):
    the raw ids of data read from a spec, else the internal ids themselves."""
    users = np.arange(data.num_users + 1, dtype=np.int64)
    items = np.arange(data.item_features.shape[0], dtype=np.int64)
    if data.vocabulary is None:
        return users.astype(object), items
    raw_users, raw_items = data.vocabulary.users.values, data.vocabulary.items.values
    assert raw_users is not None and raw_items is not None
    return (
        np.array([None, *raw_users.to_pylist()], dtype=object),
        np.array([None, *raw_items.to_pylist()], dtype=object),
    )


class LatencyProbe:
    """Closed-loop timing of `/prerank` with bodies drawn from the data's users and catalogue."""

    def __init__(self, service: ServiceProcess, data: InteractionData, seed: int) -> None:
        self.service = service
        self.data = data
        self.rng = np.random.default_rng(seed)
        self.user_ids, self.item_ids = caller_ids(data)

    def bodies(self, candidates: int, count: int) -> list[bytes]:
        users = self.rng.integers(1, self.data.num_users + 1, size=count)
        return [
            orjson.dumps(
                {
                    "user_id": self.user_ids[user],
                    "candidates": self.item_ids[
                        self.rng.choice(self.data.catalogue, size=candidates, replace=False)
                    ].tolist(),
                }
            )
            for user in users
        ]

    def run(self, wanted: int, requests: int, warmup: int) -> dict[str, Any]:
        """Percentiles (ms) of `requests` timed requests of min(wanted, catalogue) candidates."""
        candidates = min(wanted, self.data.num_items)
        bodies = self.bodies(candidates, warmup + requests)
        # the full model's latency is measured: no deadline fallback within the request timeout
        headers = {DEADLINE_HEADER: str(REQUEST_TIMEOUT_SECONDS * 1000)}
        url = f"{self.service.url}/prerank"
        warm = closed_loop(url, bodies[:warmup], headers)
        timed = closed_loop(url, bodies[warmup:], headers)
        values = np.percentile(timed.latencies_ms, PERCENTILES)
        return {
            "candidates_requested": wanted,
            "candidates": candidates,
            "requests": requests,
            "errors": warm.errors + timed.errors,
            "degraded": warm.degraded + timed.degraded,
            **{f"p{p}_ms": round(float(v), 3) for p, v in zip(PERCENTILES, values, strict=True)},
        }


def publish_first_seed_bundles(
    reproduction: Runs,
    dataset: str,
    models: tuple[str, ...],
    client: RedisClient,
    keys: RedisKeys,
) -> dict[str, str]:
    """model -> bundle version: each model's first-seed bundle, built once (reused while its
    fingerprint holds) and published under `keys`, the first one active."""
    settings, seed = reproduction.settings, reproduction.config.seeds[0]
    data = reproduction.data(dataset)
    versions: dict[str, str] = {}
    for name in models:
        spec = RunSpec(dataset, name, seed)
        job = settings.model_copy(
            update={
                "artifacts_dir": reproduction.run_dir(dataset) / "artifacts",
                "train": reproduction.train_config(spec),
            }
        )
        fingerprint = config_fingerprint(job, name, data.fingerprint())
        found = find_reusable_bundle(job.bundles_dir, fingerprint)
        if found is None:
            model = reproduction.load_model(spec)
            metrics = ModelMetrics(
                splits=evaluate(model, data, reproduction.train.eval_batch_size),
                train_seconds=0.0,
                epochs=reproduction.train.epochs,
            )
            found = build_bundle(model, metrics, {}, data, job, fingerprint, progress=False)
        path, manifest = found
        publish_bundle(
            client,
            keys,
            path,
            chunk_bytes=settings.publish_chunk_bytes,
            keep_versions=len(models) + 1,
            gate=OPEN_GATE,
            orphan_min_idle_seconds=settings.publish_orphan_min_idle_seconds,
            activate=not versions,
            progress=False,
        )
        versions[name] = manifest.version
    return versions


def measure_latency(
    reproduction: Runs, dataset: str, models: tuple[str, ...], scope: str = "reproduce"
) -> list[dict[str, Any]]:
    """p50/p95/p99 of `/prerank` through the real service for each model's first-seed bundle,
    at each configured candidate count; Redis keys under `<prefix><scope>:<dataset>:`."""
    config, settings = reproduction.config, reproduction.settings
    data = reproduction.data(dataset)
    run_dir = reproduction.run_dir(dataset)
    keys = RedisKeys(f"{settings.redis_key_prefix}{scope}:{dataset}:")
    client = settings.connect_redis()
    publish_user_features(client, keys, data, settings.feature_store_batch_size, progress=False)
    versions = publish_first_seed_bundles(reproduction, dataset, models, client, keys)
    rows = []
    largest = max(config.latency_candidates)
    with ServiceProcess(settings, keys, run_dir / "service.log", largest) as service:
        probe = LatencyProbe(service, data, seed=config.seeds[0])
        for name, version in tqdm(
            versions.items(), desc=f"latency {dataset}", disable=not reproduction.progress
        ):
            client.set(keys.active, version)
            service.wait_for_version(version)
            for wanted in config.latency_candidates:
                timings = probe.run(wanted, config.latency_requests, config.latency_warmup_requests)
                rows.append({"model": name, "version": version, **timings})
    client.close()
    return rows
