"""App factory and lifespan: load the active version (Redis, else the local bundle), warm it up,
then follow Redis's pointers in the background (`service.lifecycle`)."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import Depends, FastAPI

from prerank_contract.bundle import BundleError
from service.auth import UNAUTHORIZED_RESPONSE, require_api_key
from service.bundle_cache import BundleCache
from service.feature_store import FeatureStore
from service.lifecycle import ModelFollower, RefusedVersionError, describe, prepare
from service.metrics import Metrics
from service.routes import api_router, probe_router
from service.settings import ServiceSettings
from service.snapshot import Snapshot
from service.state import ServiceState, Serving
from service.tuning import tune_process

log = logging.getLogger(__name__)


def load_local_bundle(state: ServiceState, redis_problem: str, cache: BundleCache | None) -> None:
    """Serve a bundle from disk when Redis gave nothing to serve: the newest version in the bundle
    cache, else PRERANK_BUNDLE_DIR; not ready, with every reason, when none loads."""
    settings = state.settings
    candidates = [path for path in (cache and cache.current(), settings.bundle_dir) if path]
    if not candidates:
        state.not_ready_reason = (
            f"no model loaded: {redis_problem}, and no local bundle (PRERANK_BUNDLE_DIR, "
            "PRERANK_BUNDLE_CACHE_DIR) to start from"
        )
        return
    problems = [redis_problem]
    for bundle_dir in candidates:
        try:
            snapshot = prepare(
                partial(Snapshot.from_dir, bundle_dir, settings, mmap=True), settings
            )
        except (BundleError, RefusedVersionError, OSError) as exc:
            problems.append(f"{bundle_dir}: {exc}")
            log.error("cannot serve %s: %s", bundle_dir, exc)
            continue
        state.serving = Serving(snapshot)
        state.not_ready_reason = ""
        state.metrics.set_serving(describe(state.serving))
        return
    state.not_ready_reason = "no model loaded: " + "; ".join(problems)


def redis_problem(settings: ServiceSettings, follower: ModelFollower | None) -> str:
    """Why Redis gave no version to serve, in words for /readyz."""
    if follower is None:
        return "Redis not used (PRERANK_USE_REDIS=false)"
    if follower.redis_error is not None:
        return follower.redis_error
    return (
        f"no active version under {settings.keys.active} in Redis at {settings.redis_url_redacted}"
    )


def create_app(settings: ServiceSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_process(settings)
        state: ServiceState = app.state.prerank
        client = settings.redis_client() if settings.use_redis else None
        store_client = (
            settings.redis_client(settings.feature_store_timeout_seconds) if client else None
        )
        state.store = FeatureStore(
            store_client,
            settings.keys,
            settings.feature_store_backoff_seconds,
            settings.feature_store_backoff_max_seconds,
            state.metrics.feature_store_up,
        )
        cache = (
            BundleCache(settings.bundle_cache_dir, settings.bundle_cache_keep)
            if settings.bundle_cache_dir is not None
            else None
        )
        follower = ModelFollower(state, client, cache) if client is not None else None
        started = time.perf_counter()
        try:
            if follower is not None:
                follower.poll_once()
            if state.serving is None:
                load_local_bundle(state, redis_problem(settings, follower), cache)
        except Exception as exc:  # a model that cannot load must not take the process down
            state.not_ready_reason = f"no model loaded: {exc}"
            log.exception("not ready")
        if state.serving is not None:
            log.info(
                "serving %s from %s (loaded and warmed in %.2f s)",
                state.serving.control.version,
                state.serving.control.source,
                time.perf_counter() - started,
            )
        else:
            log.error("not ready: %s", state.not_ready_reason)
        if settings.gc_freeze:
            # Start-up leaves ~10^5 long-lived objects (modules, the app, the snapshot); without
            # this, every full collection walks them all, a pause of tens of ms at a fixed
            # request count. Later versions' objects are young again and collected as usual.
            gc.collect()
            gc.freeze()
        if follower is not None:
            follower.start()
        yield
        if follower is not None:
            follower.stop()
        for opened in (client, store_client):
            if opened is not None:
                opened.close()

    app = FastAPI(title="FIT pre-ranking service", version="0.1.0", lifespan=lifespan)
    app.state.prerank = ServiceState(settings, Metrics(), FeatureStore.offline(settings.keys))
    if settings.api_key_hashes:  # the dependency also declares the bearer scheme in OpenAPI
        app.include_router(
            api_router, dependencies=[Depends(require_api_key)], responses=UNAUTHORIZED_RESPONSE
        )
    else:
        app.include_router(api_router)
    app.include_router(probe_router)
    return app
