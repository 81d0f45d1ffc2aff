"""Reproduce the paper's MovieLens tables: every model for a list of seeds, FIT's sensitivity to
K, the learned meta matrix, and the efficiency table measured here.

One run per (dataset, model, seed, variant) is trained and evaluated with the job's one training
loop and budget, and written to `results_dir/<dataset>/<run>.json` (temp + rename) with the
fingerprint of what produced it: an interrupted reproduction resumes where it stopped, and a run
whose data, settings or code changed is trained again. The first seed's weights are kept beside
it, for the efficiency measurements and the meta-matrix picture. `research.reproduce.report` turns the
results into docs/results/<dataset>.{md,json} and PNG plots.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from offline_jobs.bundling.assemble import build_bundle
from offline_jobs.bundling.fingerprint import (
    code_fingerprint,
    config_fingerprint,
    find_reusable_bundle,
)
from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.data.movielens import load_movielens_1m, load_movielens_100k
from offline_jobs.release.publish import publish_bundle, publish_user_features
from offline_jobs.settings import REPO_ROOT, JobSettings
from offline_jobs.training.evaluate import evaluate
from offline_jobs.training.loop import (
    TrainConfig,
    TrainResult,
    new_model,
    new_optimizer,
    train_model,
    train_step,
)
from prerank_contract.bundle import write_text_atomically
from prerank_contract.gate import GateConfig
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import ModelMetrics
from prerank_model.models.base import PrerankModel
from prerank_model.models.fit import FIT
from research.reproduce.latency import LatencyProbe
from research.service_process import ServiceProcess

log = logging.getLogger(__name__)

DatasetKey = Literal["ml-1m", "ml-100k"]
DATASETS: tuple[DatasetKey, ...] = ("ml-1m", "ml-100k")
# The paper's table, then its ablations: the order of every table we write.
TABLE_MODELS = ("two_tower", "dat", "cold", "inttower", "ranktower", "fit")
ABLATIONS = ("fit_no_mqm", "fit_no_lss", "fit_summax", "fit_fc")
# The code a run's figures depend on: editing the report, the CLI or the service keeps the runs.
TRAINING_SOURCES = (
    "prerank_model",
    "offline_jobs/data",
    "offline_jobs/training/loop.py",
    "offline_jobs/training/evaluate.py",
)
# Reproduction bundles are measured, not judged: the gate is the lifecycle's business.
OPEN_GATE = GateConfig(min_auc=0.0, max_auc_drop=1.0)


class ReproduceConfig(BaseModel):
    """What `python -m research.reproduce` runs (``PRERANK_REPRODUCE__*``; CLI flags win)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    datasets: tuple[DatasetKey, ...] = DATASETS
    models: tuple[str, ...] = TABLE_MODELS + ABLATIONS
    seeds: tuple[int, ...] = Field(default=(1, 2, 3), min_length=1)
    leaky_seeds: tuple[int, ...] = Field(
        default=(1,), description="seeds also run with the leaky mean-rating features"
    )
    k_values: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256)
    k_seeds: tuple[int, ...] = (1,)
    epochs: int | None = Field(default=None, ge=1, description="None: the job's train.epochs")
    max_ratings: int | None = Field(
        default=None, ge=1, description="read only the first N ratings (a slice, for CI)"
    )
    timing_rounds: int = Field(default=10, ge=1, description="interleaved rounds of timed steps")
    timing_steps: int = Field(default=40, ge=1, description="timed training steps per round")
    measure_latency: bool = Field(default=True, description="time /prerank through the service")
    latency_candidates: tuple[int, ...] = (1_000, 5_000)
    latency_requests: int = Field(default=200, ge=1, description="timed requests per model and N")
    latency_warmup_requests: int = Field(default=20, ge=0)
    results_dir: Path = REPO_ROOT / "results" / "reproduce"
    docs_dir: Path = REPO_ROOT / "docs" / "results"


@dataclass(frozen=True)
class RunSpec:
    """One training run: a model on a dataset with a seed, optionally leaky or with another K."""

    dataset: DatasetKey
    model: str
    seed: int
    leaky: bool = False
    k: int | None = None  # FIT's number of meta vectors when swept; None: the configured one

    @property
    def key(self) -> str:
        parts = [self.model, f"s{self.seed}"]
        if self.leaky:
            parts.append("leaky")
        if self.k is not None:
            parts.append(f"k{self.k}")
        return "-".join(parts)


def _write_json(path: Path, payload: Any) -> None:
    write_text_atomically(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


class Reproduction:
    """The runs of one reproduction: data loaded once per (dataset, leaky), results on disk."""

    def __init__(self, settings: JobSettings, config: ReproduceConfig, *, progress: bool) -> None:
        self.settings = settings
        self.config = config
        self.progress = progress
        self._data: dict[tuple[DatasetKey, bool], InteractionData] = {}
        self.train = settings.train.model_copy(
            update={"epochs": config.epochs or settings.train.epochs}
        )

    def data(self, dataset: DatasetKey, leaky: bool = False) -> InteractionData:
        if (dataset, leaky) not in self._data:
            update: dict[str, Any] = {"mean_rating_features": leaky}
            if self.config.max_ratings is not None:
                update["max_ratings"] = self.config.max_ratings
            if dataset == "ml-1m":
                data = load_movielens_1m(
                    self.settings.ml1m.model_copy(update=update), progress=self.progress
                )
            else:
                data = load_movielens_100k(
                    self.settings.ml100k.model_copy(update=update), progress=self.progress
                )
            self._data[dataset, leaky] = data
        return self._data[dataset, leaky]

    def run_dir(self, dataset: DatasetKey) -> Path:
        return self.config.results_dir / dataset

    def model_config(self, spec: RunSpec) -> Any:
        if spec.k is None:
            return self.settings.model
        return self.settings.model.model_copy(update={"num_meta_queries": spec.k})

    def train_config(self, spec: RunSpec) -> TrainConfig:
        return self.train.model_copy(update={"seed": spec.seed})

    def fingerprint(self, spec: RunSpec, data: InteractionData) -> str:
        payload = {
            "run": spec.key,
            "data": data.fingerprint(),
            "model": self.model_config(spec).model_dump(mode="json"),
            "train": self.train_config(spec).model_dump(mode="json"),
            "code": code_fingerprint(TRAINING_SOURCES),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def result(self, spec: RunSpec, *, keep_weights: bool = False) -> dict[str, Any]:
        """The run's figures: read back when an identical run finished before, else trained."""
        data = self.data(spec.dataset, spec.leaky)
        fingerprint = self.fingerprint(spec, data)
        path = self.run_dir(spec.dataset) / f"{spec.key}.json"
        weights = path.with_suffix(".pt")
        if path.is_file():
            previous = json.loads(path.read_text())
            if previous.get("fingerprint") == fingerprint and (
                not keep_weights or weights.is_file()
            ):
                return dict(previous)
        trained = self._train(spec, data)
        model = trained.model
        started = time.perf_counter()
        splits = evaluate(model, data, self.train.eval_batch_size)
        result = {
            "dataset": spec.dataset,
            "model": spec.model,
            "seed": spec.seed,
            "leaky": spec.leaky,
            "k": model.num_meta_queries,
            "fingerprint": fingerprint,
            "test_auc": splits["test"].auc,
            "test_logloss": splits["test"].logloss,
            "validation_auc": splits["validation"].auc,
            "samples": {name: m.samples for name, m in splits.items()},
            "train_seconds": trained.train_seconds,
            "epochs": trained.epochs,
            "seconds_per_epoch": trained.train_seconds / trained.epochs,
            "eval_seconds": time.perf_counter() - started,
            "parameters": sum(p.numel() for p in model.parameters()),
            "bytes_per_item": stored_bytes_per_item(model, data),
        }
        if keep_weights:
            weights.parent.mkdir(parents=True, exist_ok=True)
            tmp = weights.with_suffix(".pt.tmp")
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, weights)
        _write_json(path, result)
        log.info(
            "%s %s: test AUC %.4f logloss %.4f (%.1f s/epoch)",
            spec.dataset,
            spec.key,
            result["test_auc"],
            result["test_logloss"],
            result["seconds_per_epoch"],
        )
        return result

    def _train(self, spec: RunSpec, data: InteractionData) -> TrainResult:
        torch.set_num_threads(self.settings.torch_threads)
        model = new_model(spec.model, data.schema, self.model_config(spec), spec.seed)
        return train_model(model, data, self.train_config(spec), progress=self.progress)

    def load_model(self, spec: RunSpec) -> PrerankModel:
        """The kept weights of a finished run (see `result(..., keep_weights=True)`)."""
        data = self.data(spec.dataset, spec.leaky)
        model = new_model(spec.model, data.schema, self.model_config(spec), spec.seed)
        path = self.run_dir(spec.dataset) / f"{spec.key}.pt"
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()

    def specs(self, dataset: DatasetKey) -> Iterator[tuple[RunSpec, bool]]:
        """(run, keep its weights) for every run of `dataset`, in table order."""
        config = self.config
        for model in config.models:
            for seed in config.seeds:
                yield RunSpec(dataset, model, seed), seed == config.seeds[0]
        for model in config.models:
            for seed in config.leaky_seeds:
                yield RunSpec(dataset, model, seed, leaky=True), False
        if "fit" in config.models:
            for k in config.k_values:
                if k == self.settings.model.num_meta_queries:
                    continue  # the main FIT runs are this K
                for seed in config.k_seeds:
                    yield RunSpec(dataset, "fit", seed, k=k), False


def stored_bytes_per_item(model: PrerankModel, data: InteractionData) -> int:
    """Bytes the bundle stores per catalogue item: its heads (float32) and its meta index."""
    with torch.no_grad():
        model.eval()
        item = torch.from_numpy(data.item_features[data.catalogue[:1]])
        heads, _ = model.encode_items(item)
    return int(heads[0].numel()) * 4 + np.dtype(np.int32).itemsize


def meta_matrix_points(model: FIT, data: InteractionData) -> dict[str, list[Any]]:
    """Item keys and meta vectors in 2-D (PCA fitted on the item keys) with each item's meta
    index: what `report` draws."""
    from sklearn.decomposition import PCA

    with torch.no_grad():
        keys = model.item_embedding(torch.from_numpy(data.item_features[data.catalogue]))
        meta_index = model.meta_query.meta_index(keys).numpy()
        meta = model.meta_query.meta_matrix.detach().numpy()
    pca = PCA(n_components=2, random_state=0).fit(keys.numpy())
    return {
        "items": pca.transform(keys.numpy()).round(4).tolist(),
        "meta_index": meta_index.tolist(),
        "meta_vectors": pca.transform(meta).round(4).tolist(),
        "explained_variance": pca.explained_variance_ratio_.round(4).tolist(),
    }


def measure_training_time(
    reproduction: Reproduction, dataset: DatasetKey, models: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Seconds per epoch of each model, measured side by side: rounds in which every model in
    turn runs `timing_steps` steps of the training loop (`train_step`) on the same
    batches; median step time x steps per epoch. Interleaving keeps a burst of load on the
    machine from landing on one model only."""
    config, settings = reproduction.config, reproduction.settings
    data = reproduction.data(dataset)
    train = reproduction.train
    torch.set_num_threads(settings.torch_threads)
    rng = np.random.default_rng(config.seeds[0])
    order = rng.permutation(data.splits["train"])
    batches = [
        make_batch(data, order[start : start + train.batch_size])
        for start in range(
            0, min(order.size, (config.timing_steps + 1) * train.batch_size), train.batch_size
        )
    ]
    warm, timed = batches[0], batches[1:]
    loss_fn = torch.nn.BCEWithLogitsLoss()
    models_and_optimizers = {}
    for name in models:
        model = new_model(name, data.schema, settings.model, config.seeds[0]).train()
        models_and_optimizers[name] = (model, new_optimizer(model, train))
    step_seconds: dict[str, list[float]] = {name: [] for name in models}
    for _ in tqdm(range(config.timing_rounds), desc="timing", disable=not reproduction.progress):
        for name, (model, optimizer) in models_and_optimizers.items():
            for index, batch in enumerate([warm, *timed]):
                started = time.perf_counter()
                train_step(model, optimizer, batch, loss_fn)
                if index:
                    step_seconds[name].append(time.perf_counter() - started)
    steps_per_epoch = math.ceil(data.splits["train"].size / train.batch_size)
    return {
        name: {
            "step_ms_median": 1000 * float(np.median(seconds)),
            "steps_timed": len(seconds),
            "steps_per_epoch": steps_per_epoch,
            "seconds_per_epoch": float(np.median(seconds)) * steps_per_epoch,
        }
        for name, seconds in step_seconds.items()
    }


def measure_latency(
    reproduction: Reproduction, dataset: DatasetKey, models: tuple[str, ...]
) -> list[dict[str, Any]]:
    """p50/p95/p99 of `/prerank` through the real service (uvicorn, ONNX Runtime, Redis) for
    each model's first-seed bundle, at each configured candidate count."""
    config, settings = reproduction.config, reproduction.settings
    data = reproduction.data(dataset)
    run_dir = reproduction.run_dir(dataset)
    keys = RedisKeys(f"{settings.redis_key_prefix}reproduce:{dataset}:")
    client = settings.connect_redis()
    publish_user_features(client, keys, data, settings.feature_store_batch_size, progress=False)
    versions: dict[str, str] = {}
    for name in models:
        spec = RunSpec(dataset, name, config.seeds[0])
        job = settings.model_copy(
            update={
                "artifacts_dir": run_dir / "artifacts",
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
            activate=not versions,
            progress=False,
        )
        versions[name] = manifest.version
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


def reproduce(settings: JobSettings, config: ReproduceConfig, *, progress: bool = True) -> None:
    """Every run of every dataset, then the efficiency measurements, then the reports."""
    from research.reproduce.report import write_report

    reproduction = Reproduction(settings, config, progress=progress)
    for dataset in config.datasets:
        runs = [
            reproduction.result(spec, keep_weights=keep)
            for spec, keep in tqdm(
                list(reproduction.specs(dataset)), desc=f"reproduce {dataset}", disable=not progress
            )
        ]
        data = reproduction.data(dataset)
        meta = None
        if "fit" in config.models:
            fit = reproduction.load_model(RunSpec(dataset, "fit", config.seeds[0]))
            assert isinstance(fit, FIT)
            meta = meta_matrix_points(fit, data)
        try:
            latency: list[dict[str, Any]] = []
            latency_note: str | None = "not measured (--no-latency)"
            if config.measure_latency:
                latency = measure_latency(reproduction, dataset, config.models)
                latency_note = None
        except Exception as exc:  # Redis or the service unavailable: the table says so
            log.exception("latency not measured")
            latency, latency_note = [], f"not measured: {exc}"
        timing = measure_training_time(reproduction, dataset, config.models)
        write_report(
            dataset=dataset,
            data=data,
            runs=runs,
            timing=timing,
            latency=latency,
            latency_note=latency_note,
            meta_matrix=meta,
            config=config,
            train=reproduction.train,
            model=settings.model,
        )
