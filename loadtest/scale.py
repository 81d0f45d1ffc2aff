"""``python -m loadtest.scale`` (``make bench-scale``): a large catalogue through precompute,
publish and the service, against a small one.

For each catalogue size (10,000 and 1,000,000 items by default), a FIT bundle's item table is
tiled to that size (`loadtest.memory.tiled_bundle`). Measured: precompute (FIT's `encode_items` in
torch, in batches, on that many items' features; seeded weights of the bundle's config), publish
to Redis under a scratch key prefix (time and the growth of Redis's `used_memory`), the service's
start (load, verify, warm-up, until ready), its RSS, and `/prerank` p50 at 1,000 candidates with
the closed-loop client. Writes docs/benchmarks/scale.md with the p50 ratio (goal: <= 1.2, the
lookup must not grow with the catalogue).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from loadtest.bench import newest_bundle, request_set
from loadtest.memory import tiled_bundle
from loadtest.settings import REPO_ROOT, LoadSettings
from offline_jobs.bundle import write_text_atomically
from offline_jobs.latency import ServiceProcess, closed_loop
from offline_jobs.publish import publish_bundle
from offline_jobs.train import new_model
from prerank_contract.bundle import verify_bundle_dir
from prerank_contract.http import DEADLINE_HEADER
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import ITEM_FEATURES_FILE, ITEM_IDS_FILE
from prerank_contract.redis_client import RedisClient
from prerank_contract.settings import load_settings
from prerank_model.config import ModelConfig

log = logging.getLogger("loadtest.scale")

MIB = 2**20
P50_GOAL = 1.2  # p50 at the largest catalogue over p50 at the smallest


class ScaleSettings(LoadSettings):
    scale_items: tuple[int, ...] = Field(
        default=(10_000, 1_000_000), description="catalogue sizes compared (smallest first)"
    )
    scale_candidates: int = Field(default=1_000, ge=1, description="candidates per request")
    scale_requests: int = Field(default=1_000, ge=1, description="timed requests per catalogue")
    scale_warmup: int = Field(default=30, ge=0, description="untimed requests first")
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
    precompute_s: float
    publish_s: float
    redis_mib: float
    ready_s: float
    rss_mib: float
    p50_ms: float
    p99_ms: float


def time_precompute(bundle: Path, settings: ScaleSettings) -> float:
    """Seconds of FIT's `encode_items` over every item of `bundle`, in batches (torch, 1 thread)."""
    manifest = verify_bundle_dir(bundle)
    model = new_model(
        manifest.model_name,
        manifest.feature_schema,
        ModelConfig.model_validate(manifest.config["model"]),
        settings.load_seed,
    ).eval()
    features = np.load(bundle / ITEM_FEATURES_FILE, mmap_mode="r")  # [N, S_i]
    torch.set_num_threads(1)
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, features.shape[0], settings.scale_precompute_batch):
            batch = torch.from_numpy(
                np.array(
                    features[start : start + settings.scale_precompute_batch]
                )  # read from disk
            )
            model.encode_items(batch)
    return time.perf_counter() - started


def time_publish(bundle: Path, settings: ScaleSettings, client: RedisClient) -> tuple[float, float]:
    """(seconds, MiB of Redis memory) to publish `bundle` under a scratch prefix, then removed."""
    keys = RedisKeys(f"scale-{uuid.uuid4().hex[:8]}:")
    before = int(client.info("memory")["used_memory"])
    started = time.perf_counter()
    try:
        publish_bundle(
            client,
            keys,
            bundle,
            chunk_bytes=settings.scale_publish_chunk_bytes,
            keep_versions=1,
            gate=settings.gate,
            override_reason="scale benchmark: a tiled copy of a gated bundle",
            progress=False,
        )
        seconds = time.perf_counter() - started
        grown = (int(client.info("memory")["used_memory"]) - before) / MIB
    finally:
        written = list(client.scan_iter(match=f"{keys.prefix}*", count=1000))
        if written:
            client.delete(*written)
    return seconds, grown


def serve_and_time(
    bundle: Path, settings: ScaleSettings, scratch: Path
) -> tuple[float, float, np.ndarray]:
    """(seconds to ready, RSS MiB, latencies ms) of the service on `bundle` at 1,000 candidates."""
    catalogue = np.load(bundle / ITEM_IDS_FILE)
    rng = np.random.default_rng(settings.load_seed)
    bodies = request_set(
        catalogue,
        settings.scale_candidates,
        settings.scale_warmup + settings.scale_requests,
        settings.load_history,
        settings.load_users,
        rng,
    ).bodies
    started = time.perf_counter()
    service = ServiceProcess.from_bundle_dir(
        bundle,
        scratch / f"service-{catalogue.size}.log",
        settings.scale_candidates,
        env_overrides={"PRERANK_SHUTDOWN_DRAIN_SECONDS": "0"},
    )
    with service:
        ready = time.perf_counter() - started
        headers = {DEADLINE_HEADER: "60000"}
        closed_loop(f"{service.url}/prerank", bodies[: settings.scale_warmup], headers)
        run = closed_loop(f"{service.url}/prerank", bodies[settings.scale_warmup :], headers)
        rss = sum(p.memory_info().rss for p in service.processes()) / MIB
    if run.errors:
        raise RuntimeError(f"{run.errors} failed requests at {catalogue.size} items")
    return ready, rss, run.latencies_ms


def report(settings: ScaleSettings, rows: list[ScaleRow]) -> str:
    small, large = rows[0], rows[-1]
    ratio = large.p50_ms / small.p50_ms
    verdict = "PASS" if ratio <= P50_GOAL else "MISS"
    lines = [
        "# A large catalogue through precompute, publish and the service",
        "",
        "Generated by `python -m loadtest.scale` (`make bench-scale`): a FIT bundle's item table "
        "tiled to each size. Precompute: FIT's `encode_items` in torch (1 thread, batches of "
        f"{settings.scale_precompute_batch:,}). Publish: to the local Redis under a scratch "
        "prefix, removed after. Ready: the service's start until `/readyz` is 200 (verify every "
        "sha256, map the item table, warm up, including the fallback order over the whole "
        f"catalogue). p50/p99: {settings.scale_requests} closed-loop requests of "
        f"{settings.scale_candidates:,} candidates.",
        "",
        "| items | precompute s | publish s | Redis MiB | ready s | service RSS MiB | p50 ms "
        "| p99 ms |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.items:,} | {r.precompute_s:.2f} | {r.publish_s:.2f} | {r.redis_mib:.0f} | "
            f"{r.ready_s:.2f} | {r.rss_mib:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |"
        )
    lines += [
        "",
        f"**{verdict}**: p50 at {large.items:,} items / p50 at {small.items:,} items = "
        f"{ratio:.2f} (goal <= {P50_GOAL}).",
        "",
        "Per item, from the largest row: precompute "
        f"{1e6 * large.precompute_s / large.items:.2f} us, publish "
        f"{1e6 * large.publish_s / large.items:.2f} us, Redis "
        f"{large.redis_mib * MIB / large.items:.0f} bytes.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.scale", description=__doc__)
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = load_settings(ScaleSettings)
    source = newest_bundle(REPO_ROOT / "artifacts" / "bundles", "fit")
    client = settings.connect_redis()
    rows = []
    with tempfile.TemporaryDirectory(prefix="scale-") as scratch_dir:
        scratch = Path(scratch_dir)
        for items in sorted(settings.scale_items):
            log.info("%d items", items)
            bundle = tiled_bundle(source, scratch / "bundles", items)
            precompute = time_precompute(bundle, settings)
            publish_s, redis_mib = time_publish(bundle, settings, client)
            ready, rss, latencies = serve_and_time(bundle, settings, scratch)
            rows.append(
                ScaleRow(
                    items,
                    precompute,
                    publish_s,
                    redis_mib,
                    ready,
                    rss,
                    float(np.percentile(latencies, 50)),
                    float(np.percentile(latencies, 99)),
                )
            )
    client.close()
    text = report(settings, rows)
    write_text_atomically(settings.scale_report, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
