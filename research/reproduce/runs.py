"""The training runs of a reproduction or a comparison, kept on disk.

One run per (dataset, model, seed, variant) is trained and evaluated with the job's one training
loop and budget, and written to `results_dir/<dataset>/<run>.json` (temp + rename) with the
fingerprint of what produced it: an interrupted measurement resumes where it stopped, and a run
whose data, settings or code changed is trained again. The first seed's weights are kept beside
it, for the efficiency measurements and the meta-matrix picture. `Runs` takes its data from any
loader (a dataset spec for `research.compare`); `Reproduction` reads MovieLens' files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offline_jobs.bundling.fingerprint import code_fingerprint
from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.movielens import load_movielens_1m, load_movielens_100k
from offline_jobs.settings import JobSettings
from offline_jobs.training.evaluate import evaluate
from offline_jobs.training.loop import TrainConfig, new_model, train_model
from prerank_contract.bundle import write_text_atomically
from prerank_model.config import ModelConfig
from prerank_model.models.base import PrerankModel
from research.reproduce.plan import DATASETS, MeasureConfig, ReproduceConfig, RunSpec

log = logging.getLogger(__name__)

# The code a run's figures depend on: the models, the data and the training package (loop,
# losses, evaluation). The feature schema is in the data's fingerprint; the runs train in one
# process. Editing the report, the CLI or the service keeps the runs.
TRAINING_SOURCES = ("prerank_model", "offline_jobs/data", "offline_jobs/training")


def write_json(path: Path, payload: Any) -> None:
    write_text_atomically(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


DataLoader = Callable[[str, bool], InteractionData]
"""(dataset, leaky) -> the data its runs train on."""


class Runs:
    """Training runs of one measurement: data loaded once per (dataset, leaky) by `loader`,
    results on disk under `config.results_dir`."""

    def __init__(
        self,
        settings: JobSettings,
        config: MeasureConfig,
        loader: DataLoader,
        *,
        progress: bool,
    ) -> None:
        self.settings = settings
        self.config = config
        self.progress = progress
        self._loader = loader
        self._data: dict[tuple[str, bool], InteractionData] = {}
        self.train = settings.train.model_copy(
            update={"epochs": config.epochs or settings.train.epochs}
        )

    def data(self, dataset: str, leaky: bool = False) -> InteractionData:
        """The dataset as the runs read it (leaky: with the mean-rating features)."""
        if (dataset, leaky) not in self._data:
            self._data[dataset, leaky] = self._loader(dataset, leaky)
        return self._data[dataset, leaky]

    def run_dir(self, dataset: str) -> Path:
        return self.config.results_dir / dataset

    def model_config(self, spec: RunSpec) -> ModelConfig:
        if spec.k is None:
            return self.settings.model
        return self.settings.model.model_copy(update={"num_meta_queries": spec.k})

    def train_config(self, spec: RunSpec) -> TrainConfig:
        return self.train.model_copy(update={"seed": spec.seed})

    def fingerprint(self, spec: RunSpec, data: InteractionData) -> str:
        """What the run's figures depend on: the run, its data, sizes, budget and training code."""
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
        model, result = self._train_and_evaluate(spec, data, fingerprint)
        if keep_weights:
            save_weights(model, weights)
        write_json(path, result)
        log.info(
            "%s %s: test AUC %.4f logloss %.4f (%.1f s/epoch)",
            spec.dataset,
            spec.key,
            result["test_auc"],
            result["test_logloss"],
            result["seconds_per_epoch"],
        )
        return result

    def _train_and_evaluate(
        self, spec: RunSpec, data: InteractionData, fingerprint: str
    ) -> tuple[PrerankModel, dict[str, Any]]:
        """The trained model and the run's figures."""
        torch.set_num_threads(self.settings.torch_threads)
        model = new_model(spec.model, data.schema, self.model_config(spec), spec.seed)
        trained = train_model(model, data, self.train_config(spec), progress=self.progress)
        started = time.perf_counter()
        splits = evaluate(model, data, self.train.eval_batch_size)
        return model, {
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

    def load_model(self, spec: RunSpec) -> PrerankModel:
        """The kept weights of a finished run (see `result(..., keep_weights=True)`)."""
        data = self.data(spec.dataset, spec.leaky)
        model = new_model(spec.model, data.schema, self.model_config(spec), spec.seed)
        path = self.run_dir(spec.dataset) / f"{spec.key}.pt"
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()


class Reproduction(Runs):
    """The runs of one reproduction: MovieLens read from its files (the configured slice)."""

    config: ReproduceConfig

    def __init__(self, settings: JobSettings, config: ReproduceConfig, *, progress: bool) -> None:
        super().__init__(settings, config, self._movielens, progress=progress)

    def _movielens(self, dataset: str, leaky: bool) -> InteractionData:
        if dataset not in DATASETS:
            raise ValueError(f"unknown MovieLens dataset {dataset!r}; known: {DATASETS}")
        update: dict[str, Any] = {"mean_rating_features": leaky}
        if self.config.max_ratings is not None:
            update["max_ratings"] = self.config.max_ratings
        if dataset == "ml-1m":
            return load_movielens_1m(
                self.settings.ml1m.model_copy(update=update), progress=self.progress
            )
        return load_movielens_100k(
            self.settings.ml100k.model_copy(update=update), progress=self.progress
        )

    def specs(self, dataset: str) -> Iterator[tuple[RunSpec, bool]]:
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


def save_weights(model: PrerankModel, path: Path) -> None:
    """The model's state dict at `path` (temp + rename: never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)


def stored_bytes_per_item(model: PrerankModel, data: InteractionData) -> int:
    """Bytes the bundle stores per catalogue item: its heads (float32) and its meta index."""
    with torch.no_grad():
        model.eval()
        item = torch.from_numpy(data.item_features[data.catalogue[:1]])
        heads, _ = model.encode_items(item)
    return int(heads[0].numel()) * 4 + np.dtype(np.int32).itemsize
