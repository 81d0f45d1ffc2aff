"""The naive path, for information: FIT's full model once per (user, item) pair against
decoupled scoring (the user tower once, precomputed item heads gathered, the scorer), timed in
process (torch). It says how slow the naive path is, not how fast ours is: no goal judges it."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from offline_jobs.training.loop import new_model
from prerank_contract.features import PADDING_INDEX
from prerank_contract.manifest import ITEM_FEATURES_FILE, Manifest
from prerank_model.config import ModelConfig
from research.http_client import SECONDS_TO_MS
from research.settings import BenchSettings


@dataclass(frozen=True)
class ScoringPaths:
    """FIT's two ways of scoring one user's candidates, timed in process (torch)."""

    candidates: int
    decoupled_ms: float  # median: K-way user tower once + gather of precomputed heads + scorer
    per_pair_ms: float  # median: the full model once per (user, item) pair
    decoupled_kernel_ms: float  # median time of a call spent in the kernel (page faults)
    per_pair_kernel_ms: float
    max_abs_logit_diff: float  # the two paths' logits agree (eval mode: hard meta queries)
    repeats: int
    torch_threads: int
    weights: str  # where the weights came from

    @property
    def speedup(self) -> float:
        return self.per_pair_ms / self.decoupled_ms


def timings_ms(run: Callable[[], object], repeats: int) -> list[tuple[float, float]]:
    """(wall time, time in the kernel) of each of `repeats` calls of `run`: the kernel's share
    is mostly page faults of fresh intermediates, which swings with the allocator's state."""
    timings = []
    for _ in range(repeats):
        kernel_before = resource.getrusage(resource.RUSAGE_THREAD).ru_stime
        started = time.perf_counter()
        run()
        wall = time.perf_counter() - started
        kernel = resource.getrusage(resource.RUSAGE_THREAD).ru_stime - kernel_before
        timings.append((wall * SECONDS_TO_MS, kernel * SECONDS_TO_MS))
    return timings


def time_scoring_paths(
    bundle_dir: Path, manifest: Manifest, settings: BenchSettings
) -> ScoringPaths:
    """Decoupled scoring against the full model per pair, at `bench_scoring_candidates` items of
    the bundle's catalogue. The bundle carries ONNX graphs, not torch weights (and no item tower
    at all: item heads are precomputed), so the model is built from the bundle's own config and
    feature schema with seeded initial weights: the timing compares compute paths, which the
    weights' values do not change."""
    schema = manifest.feature_schema
    config = ModelConfig.model_validate(manifest.config["model"])
    torch.set_num_threads(settings.bench_torch_threads)
    model = new_model(manifest.model_name, schema, config, settings.bench_seed).eval()
    rng = np.random.default_rng(settings.bench_seed)
    catalogue_features = torch.from_numpy(np.load(bundle_dir / ITEM_FEATURES_FILE))  # [M, S_i]
    count = min(settings.bench_scoring_candidates, catalogue_features.shape[0])
    rows = torch.from_numpy(rng.choice(catalogue_features.shape[0], size=count, replace=False))
    user_features = torch.from_numpy(
        np.concatenate(
            [rng.integers(1, spec.vocab_size, size=spec.slots) for spec in schema.user_fields]
        )[None, :]
    )  # [1, S_u]
    history = torch.full(
        (1, schema.max_history, schema.item_slots), PADDING_INDEX, dtype=torch.int64
    )  # [1, L, S_i], left-padded like the service's
    behaviours = min(settings.bench_history, schema.max_history)
    if behaviours:
        picked = rng.choice(catalogue_features.shape[0], size=behaviours, replace=False)
        history[0, schema.max_history - behaviours :] = catalogue_features[picked]
    with torch.inference_mode():
        item_heads, meta_index = model.encode_items(catalogue_features)  # offline: [M, H_v, d]
        pair_users = user_features.repeat(count, 1)  # [N, S_u]: the user once per pair
        pair_history = history.repeat(count, 1, 1)  # [N, L, S_i]
        pair_items = catalogue_features[rows]  # [N, S_i]

        def decoupled() -> torch.Tensor:
            user_heads = model.encode_user(user_features, history)[0]  # [K, H_u, d]
            return model.score(user_heads, item_heads[rows], meta_index[rows])  # [N]

        def per_pair() -> torch.Tensor:
            return model(pair_users, pair_history, pair_items)  # [N]

        difference = float((decoupled() - per_pair()).abs().max())
        timings_ms(decoupled, settings.bench_scoring_warmup)
        timings_ms(per_pair, settings.bench_scoring_warmup)
        decoupled_ms: list[tuple[float, float]] = []
        per_pair_ms: list[tuple[float, float]] = []
        for _ in range(settings.bench_scoring_repeats):  # interleaved: drift hits both paths
            decoupled_ms += timings_ms(decoupled, 1)
            per_pair_ms += timings_ms(per_pair, 1)
    return ScoringPaths(
        candidates=count,
        decoupled_ms=statistics.median(wall for wall, _ in decoupled_ms),
        per_pair_ms=statistics.median(wall for wall, _ in per_pair_ms),
        decoupled_kernel_ms=statistics.median(kernel for _, kernel in decoupled_ms),
        per_pair_kernel_ms=statistics.median(kernel for _, kernel in per_pair_ms),
        max_abs_logit_diff=difference,
        repeats=settings.bench_scoring_repeats,
        torch_threads=settings.bench_torch_threads,
        weights=f"seeded initial weights (seed {settings.bench_seed}) of {manifest.version}'s "
        "config and feature schema; the bundle carries no torch weights",
    )
