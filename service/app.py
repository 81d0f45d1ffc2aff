"""App factory and lifespan: load the active version (Redis, else the local bundle), warm it up."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import redis
from anyio import to_thread
from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from prerank_contract.bundle import BundleError
from service.feature_store import FeatureStore
from service.metrics import Metrics
from service.routes import router
from service.settings import ServiceSettings
from service.snapshot import Snapshot
from service.state import ServiceState

log = logging.getLogger(__name__)

WARMUP_SEED = 0  # warm-up requests are drawn from the catalogue with a fixed seed


def connect_redis(settings: ServiceSettings) -> redis.Redis | None:
    if not settings.use_redis:
        return None
    try:
        return settings.connect_redis()
    except redis.RedisError as exc:
        log.warning("Redis at %s not reachable (%s)", settings.redis_url, exc)
        return None


def load_snapshot(settings: ServiceSettings, client: redis.Redis | None) -> Snapshot:
    """The active version from Redis; the local bundle directory when Redis has none."""
    problems = []
    if client is not None:
        try:
            snapshot = Snapshot.from_redis(client, settings.keys, settings)
            if snapshot is not None:
                return snapshot
            problems.append(f"no active version under {settings.keys.active}")
        except (BundleError, redis.RedisError) as exc:
            problems.append(f"redis: {exc}")
    else:
        problems.append(f"Redis at {settings.redis_url} not used or not reachable")
    if settings.bundle_dir is not None:
        return Snapshot.from_dir(settings.bundle_dir, settings)
    raise BundleError("; ".join(problems) + "; and PRERANK_BUNDLE_DIR is not set")


def warm_up(snapshot: Snapshot, settings: ServiceSettings) -> None:
    """Run the user tower and the scorer on real catalogue rows before taking traffic."""
    rng = np.random.default_rng(WARMUP_SEED)
    schema = snapshot.manifest.feature_schema
    for _ in range(settings.warmup_requests):
        rows = rng.integers(0, snapshot.item_ids.size, size=settings.warmup_candidates)
        user_heads = snapshot.encode_user(
            np.zeros((1, schema.user_slots), np.int64),
            snapshot.history_features(snapshot.item_ids[rows[: schema.max_history]]),
        )
        snapshot.score(user_heads, *snapshot.gather(rows))


def create_app(settings: ServiceSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        threadpool_limits(limits=settings.blas_threads)
        client = connect_redis(settings)
        state: ServiceState = app.state.prerank
        store_client = None
        if client is not None:
            store_client = settings.redis_client(settings.feature_store_timeout_seconds)
        state.store = FeatureStore(store_client, settings.keys)
        try:
            started = time.perf_counter()
            snapshot = load_snapshot(settings, client)
            warm_up(snapshot, settings)
            state.snapshot = snapshot
            state.metrics.set_active(snapshot.version, snapshot.manifest.model_name)
            state.not_ready_reason = ""
            log.info(
                "serving %s from %s (loaded and warmed in %.2f s)",
                snapshot.version,
                snapshot.source,
                time.perf_counter() - started,
            )
        except Exception as exc:  # a model that cannot load must not take the process down
            state.not_ready_reason = f"no model loaded: {exc}"
            log.exception("not ready: %s", state.not_ready_reason)
        yield
        for opened in (client, store_client):
            if opened is not None:
                opened.close()

    app = FastAPI(title="FIT pre-ranking service", version="0.1.0", lifespan=lifespan)
    app.state.prerank = ServiceState(settings, Metrics(), FeatureStore(None, settings.keys))
    app.include_router(router)
    return app
