"""``python -m research.scale`` (``make bench-scale``): a synthetic catalogue of a million items
through training, precompute, publish and the service, against one of 10,000.

For each catalogue size (10,000 and 1,000,000 items by default) the synthetic world is generated
with that many items (`offline_jobs.data.synthetic`, the same users and samples), FIT is trained
on it and built into a bundle by the job's own code (`offline_jobs.bundling.assemble`).
Measured: precompute (`offline_jobs.bundling.precompute.precompute_items`: encode_items + FAISS
meta index, streamed into the item table's files), the bundle build, publish to Redis under a
scratch key prefix (time and the growth of Redis's `used_memory`; the users' features too, so
requests read the feature store), the service's start from Redis (fetch, verify, warm-up, until
ready), its RSS, and `/prerank` p50 at 1,000 candidates with the closed-loop client. Writes
docs/benchmarks/scale.md with the p50 ratio (goal: <= 1.2, the lookup must not grow with the
catalogue).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
import torch
from prometheus_client.parser import text_string_to_metric_families
from pydantic import Field

from loadtest.settings import LoadSettings
from offline_jobs.bundling.assemble import build_bundle
from offline_jobs.bundling.fingerprint import config_fingerprint
from offline_jobs.bundling.precompute import precompute_items
from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.synthetic import SyntheticConfig, generate_synthetic
from offline_jobs.release.publish import publish_bundle, publish_user_features
from offline_jobs.settings import JobSettings
from offline_jobs.training.evaluate import evaluate
from offline_jobs.training.loop import TrainConfig, new_model, train_model
from prerank_contract.bundle import write_text_atomically
from prerank_contract.http import DEADLINE_HEADER
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import ModelMetrics
from prerank_contract.redis_client import RedisClient
from prerank_contract.settings import configure_logging, load_settings
from prerank_model.config import ModelConfig
from prerank_model.models.base import PrerankModel
from research.http_client import closed_loop
from research.service_process import ServiceProcess
from research.settings import REPO_ROOT

log = logging.getLogger("research.scale")

MIB = 2**20
P50_GOAL = 1.2  # p50 at the largest catalogue over p50 at the smallest
SCAN_BATCH = 1000
STAGE_METRIC = "prerank_stage_seconds"
METRICS_TIMEOUT_SECONDS = 10.0
HEADERS = {DEADLINE_HEADER: "60000"}  # a benchmark measures the model, never the fallback


class ScaleSettings(LoadSettings):
    scale_items: tuple[int, ...] = Field(
        default=(10_000, 1_000_000), description="catalogue sizes compared (smallest first)"
    )
    scale_world: SyntheticConfig = Field(
        default=SyntheticConfig(num_users=2_000, events_per_user=40),
        description="the synthetic world; its num_items is replaced by each catalogue size",
    )
    scale_train: TrainConfig = Field(
        default=TrainConfig(epochs=1), description="training budget of each catalogue's FIT"
    )
    scale_model: ModelConfig = Field(default=ModelConfig(), description="FIT's sizes")
    scale_candidates: int = Field(default=1_000, ge=1, description="candidates per request")
    scale_requests: int = Field(default=1_000, ge=1, description="timed requests per catalogue")
    scale_warmup: int = Field(default=30, ge=0, description="untimed requests first")
    scale_rounds: int = Field(
        default=10, ge=1, description="interleaved blocks the timed requests are split into"
    )
    scale_precompute_batch: int = Field(
        default=65_536, ge=1, description="items per encode_items batch"
    )
    scale_publish_chunk_bytes: int = Field(
        default=4 << 20, ge=1024, description="Redis value size of the publish"
    )
    scale_report: Path = Field(
        default=REPO_ROOT / "docs" / "benchmarks" / "scale.md", description="report path"
    )


@dataclass(frozen=True)
class ScaleRow:
    items: int
    train_s: float
    test_auc: float
    precompute_s: float
    build_s: float
    publish_s: float
    redis_mib: float
    ready_s: float
    rss_mib: float
    p50_ms: float
    p99_ms: float
    stages_ms: dict[str, float] = field(default_factory=dict)  # mean per request


@dataclass(frozen=True)
class World:
    """One catalogue size: its data, its trained FIT and that FIT's bundle."""

    data: InteractionData
    model: PrerankModel
    job: JobSettings
    metrics: ModelMetrics


def train_world(items: int, settings: ScaleSettings, scratch: Path) -> World:
    """The synthetic world with `items` items and a FIT trained on it (the job's own code)."""
    world = settings.scale_world.model_copy(update={"num_items": items})
    job = JobSettings(
        artifacts_dir=scratch / f"artifacts-{items}",
        synthetic=world,
        train=settings.scale_train,
        model=settings.scale_model,
        models=("fit",),
        precompute_batch_size=settings.scale_precompute_batch,
        gate=settings.gate,
    )
    data = generate_synthetic(world)
    torch.set_num_threads(job.torch_threads)
    model = new_model("fit", data.schema, job.model, job.train.seed)
    result = train_model(model, data, job.train)
    splits = evaluate(model, data, job.train.eval_batch_size)
    metrics = ModelMetrics(
        splits=splits, train_seconds=result.train_seconds, epochs=job.train.epochs
    )
    log.info(
        "%d items: trained in %.1f s, test AUC %.4f",
        items,
        result.train_seconds,
        splits["test"].auc,
    )
    return World(data, model, job, metrics)


def time_precompute(world: World, scratch: Path) -> float:
    """Seconds to precompute every item's heads and meta index into a scratch item table."""
    directory = scratch / f"precompute-{world.data.num_items}"
    directory.mkdir(parents=True)
    started = time.perf_counter()
    precompute_items(
        world.model,
        world.data.catalogue,
        world.data.item_features,
        world.job.precompute_batch_size,
        directory,
    )
    return time.perf_counter() - started


def time_build(world: World) -> tuple[Path, float]:
    """(bundle, seconds) of the job's whole build: precompute, ONNX export, parity, manifest."""
    fingerprint = config_fingerprint(world.job, "fit", world.data.fingerprint())
    started = time.perf_counter()
    path, _ = build_bundle(world.model, world.metrics, {}, world.data, world.job, fingerprint)
    return path, time.perf_counter() - started


@contextmanager
def published(
    bundle: Path, world: World, settings: ScaleSettings, client: RedisClient
) -> Iterator[tuple[RedisKeys, float, float]]:
    """Publish `bundle` and the world's users under a scratch prefix; yields (keys, publish
    seconds of the bundle, MiB of Redis memory it added); every scratch key is removed after."""
    keys = RedisKeys(f"scale-{uuid.uuid4().hex[:8]}:")
    try:
        publish_user_features(client, keys, world.data, world.job.feature_store_batch_size)
        before = int(client.info("memory")["used_memory"])
        started = time.perf_counter()
        publish_bundle(
            client,
            keys,
            bundle,
            chunk_bytes=settings.scale_publish_chunk_bytes,
            keep_versions=1,
            gate=settings.gate,
            orphan_min_idle_seconds=world.job.publish_orphan_min_idle_seconds,
            override_reason="scale benchmark: a world trained for one epoch",
        )
        seconds = time.perf_counter() - started
        grown = (int(client.info("memory")["used_memory"]) - before) / MIB
        yield keys, seconds, grown
    finally:
        written = list(client.scan_iter(match=f"{keys.prefix}*", count=SCAN_BATCH))
        for start in range(0, len(written), SCAN_BATCH):
            client.delete(*written[start : start + SCAN_BATCH])


def request_bodies(
    data: InteractionData, candidates: int, count: int, rng: np.random.Generator
) -> list[bytes]:
    """`count` bodies: a user of the world (features and history from the feature store) and
    `candidates` distinct catalogue items."""
    return [
        orjson.dumps(
            {
                "user_id": int(rng.integers(1, data.num_users + 1)),
                "candidates": rng.choice(data.catalogue, size=candidates, replace=False).tolist(),
            }
        )
        for _ in range(count)
    ]


def stage_totals(url: str) -> dict[str, tuple[float, float]]:
    """stage -> (seconds, observations) of `prerank_stage_seconds` so far, from /metrics."""
    totals: dict[str, tuple[float, float]] = {}
    text = httpx.get(f"{url}/metrics", timeout=METRICS_TIMEOUT_SECONDS).text
    for family in text_string_to_metric_families(text):
        if family.name != STAGE_METRIC:
            continue
        for sample in family.samples:
            stage = sample.labels["stage"]
            seconds, count = totals.get(stage, (0.0, 0.0))
            if sample.name.endswith("_sum"):
                seconds += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
            totals[stage] = (seconds, count)
    return totals


def stage_means_ms(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Mean ms per request of each stage between two scrapes."""
    means = {}
    for stage, (seconds, count) in after.items():
        seconds0, count0 = before.get(stage, (0.0, 0.0))
        if count > count0:
            means[stage] = 1e3 * (seconds - seconds0) / (count - count0)
    return means


@dataclass
class Catalogue:
    """One catalogue size on its way through the benchmark: built, published, served."""

    world: World
    bundle: Path
    precompute_s: float
    build_s: float
    publish_s: float = 0.0
    redis_mib: float = 0.0
    ready_s: float = 0.0
    service: ServiceProcess | None = None
    bodies: list[bytes] = field(default_factory=list)
    latencies_ms: list[np.ndarray] = field(default_factory=list)

    @property
    def items(self) -> int:
        return self.world.data.num_items


def start_serving(
    catalogue: Catalogue,
    keys: RedisKeys,
    settings: ScaleSettings,
    scratch: Path,
    stack: ExitStack,
) -> None:
    """Start the service following `keys` in Redis (stopped when `stack` closes; started alone,
    so its start is timed uncontended) and warm it with untimed requests."""
    rng = np.random.default_rng(settings.load_seed)
    catalogue.bodies = request_bodies(
        catalogue.world.data,
        settings.scale_candidates,
        settings.scale_warmup + settings.scale_requests,
        rng,
    )
    service = ServiceProcess(
        settings, keys, scratch / f"service-{catalogue.items}.log", settings.scale_candidates
    )
    started = time.perf_counter()
    catalogue.service = stack.enter_context(service)
    catalogue.ready_s = time.perf_counter() - started
    closed_loop(f"{service.url}/prerank", catalogue.bodies[: settings.scale_warmup], HEADERS)


def timed_rounds(catalogues: list[Catalogue], settings: ScaleSettings) -> dict[int, dict]:
    """The timed requests of every catalogue in `scale_rounds` interleaved blocks (ABAB...), so
    a slow spell of the machine falls on every catalogue alike; mean ms per stage of each."""
    before = {c.items: stage_totals(served(c).url) for c in catalogues}
    timed = {c.items: c.bodies[settings.scale_warmup :] for c in catalogues}
    per_round = -(-settings.scale_requests // settings.scale_rounds)
    for start in range(0, settings.scale_requests, per_round):
        for catalogue in catalogues:
            block = timed[catalogue.items][start : start + per_round]
            run = closed_loop(f"{served(catalogue).url}/prerank", block, HEADERS)
            if run.errors or run.degraded:
                raise RuntimeError(
                    f"{run.errors} failed and {run.degraded} degraded requests at "
                    f"{catalogue.items} items; see {served(catalogue).log_path}"
                )
            catalogue.latencies_ms.append(run.latencies_ms)
    return {
        c.items: stage_means_ms(before[c.items], stage_totals(served(c).url)) for c in catalogues
    }


def served(catalogue: Catalogue) -> ServiceProcess:
    if catalogue.service is None:
        raise RuntimeError(f"the {catalogue.items}-item catalogue is not being served")
    return catalogue.service


def run_scale(settings: ScaleSettings, client: RedisClient, scratch: Path) -> list[ScaleRow]:
    """Every catalogue size built, published and served at once; the timed requests
    interleaved; every service stopped and every scratch key removed after."""
    catalogues = []
    for items in sorted(settings.scale_items):
        log.info("%d items", items)
        world = train_world(items, settings, scratch)
        precompute_s = time_precompute(world, scratch)
        bundle, build_s = time_build(world)
        catalogues.append(Catalogue(world, bundle, precompute_s, build_s))
    with ExitStack() as stack:
        for catalogue in catalogues:
            keys, catalogue.publish_s, catalogue.redis_mib = stack.enter_context(
                published(catalogue.bundle, catalogue.world, settings, client)
            )
            start_serving(catalogue, keys, settings, scratch, stack)
        stages = timed_rounds(catalogues, settings)
        rss = {
            c.items: sum(p.memory_info().rss for p in served(c).processes()) / MIB
            for c in catalogues
        }
    return [
        ScaleRow(
            items=c.items,
            train_s=c.world.metrics.train_seconds,
            test_auc=c.world.metrics.splits["test"].auc,
            precompute_s=c.precompute_s,
            build_s=c.build_s,
            publish_s=c.publish_s,
            redis_mib=c.redis_mib,
            ready_s=c.ready_s,
            rss_mib=rss[c.items],
            p50_ms=float(np.percentile(np.concatenate(c.latencies_ms), 50)),
            p99_ms=float(np.percentile(np.concatenate(c.latencies_ms), 99)),
            stages_ms=stages[c.items],
        )
        for c in catalogues
    ]


def report(settings: ScaleSettings, rows: list[ScaleRow]) -> str:
    small, large = rows[0], rows[-1]
    ratio = large.p50_ms / small.p50_ms
    verdict = "PASS" if ratio <= P50_GOAL else "MISS"
    world = settings.scale_world
    lines = [
        "# A million-item catalogue through training, precompute, publish and the service",
        "",
        "Generated by `python -m research.scale` (`make bench-scale`). Each row is its own "
        f"synthetic world (`offline_jobs.data.synthetic`, seed {world.seed}) with that many "
        f"items and the same {world.num_users:,} users x {world.events_per_user} events, FIT "
        f"trained on it for {settings.scale_train.epochs} epoch(s) and built by the job's own "
        "code. Precompute: `precompute_items` (encode_items + the FAISS meta index, streamed "
        f"into the item table's files, batches of {settings.scale_precompute_batch:,}). Build: "
        "the whole bundle (precompute again, ONNX export, parity, manifest). Publish: the bundle "
        "to the local Redis under a scratch prefix (the users' features first, not timed), "
        "removed after. Ready: the service's start from Redis until `/readyz` is 200 (fetch and "
        "verify every sha256, map the item table, warm up, including the fallback order over "
        f"the whole catalogue). p50/p99: {settings.scale_requests} closed-loop requests of "
        f"{settings.scale_candidates:,} candidates per catalogue, each user's features and "
        "history read from the feature store; every catalogue's service runs at once and the "
        f"requests go in {settings.scale_rounds} interleaved blocks (ABAB...), so a slow spell "
        "of the machine falls on both alike.",
        "",
        "| items | train s | test AUC | precompute s | build s | publish s | Redis MiB | ready s "
        "| service RSS MiB | p50 ms | p99 ms |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.items:,} | {r.train_s:.1f} | {r.test_auc:.4f} | {r.precompute_s:.2f} | "
            f"{r.build_s:.2f} | {r.publish_s:.2f} | {r.redis_mib:.0f} | {r.ready_s:.2f} | "
            f"{r.rss_mib:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |"
        )
    stages = sorted({stage for r in rows for stage in r.stages_ms})
    if stages:
        lines += [
            "",
            "Mean ms per request of each stage of `/prerank` (`prerank_stage_seconds`, timed "
            "requests only):",
            "",
            "| items | " + " | ".join(stages) + " |",
            "|--:|" + "--:|" * len(stages),
        ]
        for r in rows:
            cells = " | ".join(f"{r.stages_ms.get(stage, 0.0):.3f}" for stage in stages)
            lines.append(f"| {r.items:,} | {cells} |")
    lines += [
        "",
        f"**{verdict}**: p50 at {large.items:,} items / p50 at {small.items:,} items = "
        f"{ratio:.2f} (goal <= {P50_GOAL}).",
        "",
        "Per item, from the largest row: precompute "
        f"{1e6 * large.precompute_s / large.items:.2f} us, publish "
        f"{1e6 * large.publish_s / large.items:.2f} us, Redis "
        f"{large.redis_mib * MIB / large.items:.0f} bytes, service start "
        f"{1e6 * large.ready_s / large.items:.2f} us.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.scale", description=__doc__)
    parser.parse_args(argv)
    configure_logging(logging.INFO)
    settings = load_settings(ScaleSettings)
    client = settings.connect_redis()
    with tempfile.TemporaryDirectory(prefix="scale-") as scratch_dir:
        rows = run_scale(settings, client, Path(scratch_dir))
    client.close()
    text = report(settings, rows)
    write_text_atomically(settings.scale_report, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
