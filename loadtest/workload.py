"""What a simulated caller of /prerank sends, drawn once with a seed, and the load shape's stages.

User ids come from the feature store (the users published under the bundle's feature schema),
candidates from the bundle's catalogue with a log-normal size distribution and a share of unknown
and duplicate ids. Imports no Locust (which monkey-patches the process), so tests import it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
import orjson

from loadtest.settings import LoadSettings
from prerank_contract.bundle import BundleError
from prerank_contract.redis_client import REDIS_ERRORS

log = logging.getLogger("loadtest.workload")

REQUEST_NAME = "/prerank"  # Locust's name of an answered request
DEGRADED_REQUEST_NAME = "/prerank (degraded)"  # a degraded answer, reported apart
SCAN_BATCH = 1000  # keys per SCAN round trip


def published_user_ids(settings: LoadSettings) -> np.ndarray:
    """Sorted int64 ids of the users with feature-store records under the bundle's feature schema
    (at most `load_published_users_limit`). Raises one of REDIS_ERRORS when Redis cannot be read,
    BundleError when the bundle has no manifest."""
    pattern = settings.keys.user_pattern(settings.feature_schema_fingerprint())
    client = settings.redis_client()
    ids: list[int] = []
    try:
        for key in client.scan_iter(match=pattern, count=SCAN_BATCH):
            name = key.decode() if isinstance(key, bytes) else key
            ids.append(int(name.rsplit(":", 1)[1]))
            if len(ids) >= settings.load_published_users_limit:
                break
    finally:
        client.close()
    return np.unique(np.asarray(ids, dtype=np.int64))


def user_pool(settings: LoadSettings) -> np.ndarray:
    """The user ids requests are drawn from: the published users, else [0, load_users) (said in
    the log: those users are mostly cold starts to the service)."""
    fallback = np.arange(settings.load_users, dtype=np.int64)
    if not settings.load_published_users:
        log.info("user ids drawn from [0, %d) (PRERANK_LOAD_PUBLISHED_USERS off)", fallback.size)
        return fallback
    try:
        published = published_user_ids(settings)
    except (BundleError, *REDIS_ERRORS) as exc:
        log.warning(
            "no published users (%s); user ids drawn from [0, %d) instead", exc, fallback.size
        )
        return fallback
    if published.size == 0:
        log.warning(
            "no feature-store records under %s; user ids drawn from [0, %d) instead",
            settings.keys.user_pattern(settings.feature_schema_fingerprint()),
            fallback.size,
        )
        return fallback
    log.info("user ids drawn from %d published users", published.size)
    return published


def candidate_sizes(
    settings: LoadSettings, catalogue_size: int, rng: np.random.Generator, count: int
) -> np.ndarray:
    """[count] list lengths: log-normal around load_candidates, clipped to [min, max] (and to the
    catalogue size, since known ids are drawn without replacement)."""
    longest = catalogue_size
    if settings.load_candidates_max is not None:
        longest = min(settings.load_candidates_max, catalogue_size)
    shortest = min(settings.load_candidates_min, longest)
    spread = np.exp(settings.load_candidates_sigma * rng.standard_normal(count))
    return np.clip(np.rint(settings.load_candidates * spread), shortest, longest).astype(np.int64)


def candidate_list(
    settings: LoadSettings, catalogue: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """`size` shuffled ids: distinct catalogue ids, ids past the catalogue's largest (unknown to
    the service) and repeats of the catalogue ids drawn (duplicates). At least one is known, so
    every answer has items."""
    duplicates = min(int(rng.binomial(size, settings.load_duplicate_share)), size - 1)
    unknown = min(int(rng.binomial(size, settings.load_unknown_share)), size - 1 - duplicates)
    known_ids = catalogue[
        rng.choice(catalogue.size, size=size - duplicates - unknown, replace=False)
    ]
    first_unknown = int(catalogue.max()) + 1
    unknown_ids = first_unknown + rng.choice(catalogue.size + size, size=unknown, replace=False)
    ids = np.concatenate([known_ids, unknown_ids, rng.choice(known_ids, size=duplicates)])
    rng.shuffle(ids)
    return ids


def draw_bodies(settings: LoadSettings, count: int, user_ids: np.ndarray) -> list[bytes]:
    """`count` JSON /prerank bodies drawn with the settings' seed; user ids from `user_ids`."""
    catalogue = settings.catalogue()
    rng = np.random.default_rng(settings.load_seed)
    sizes = candidate_sizes(settings, catalogue.size, rng, count)
    users = rng.choice(user_ids, size=count)
    bodies = []
    for size, user_id in zip(sizes.tolist(), users.tolist(), strict=True):
        body: dict[str, object] = {"user_id": user_id}
        if settings.load_history:
            history = catalogue[rng.choice(catalogue.size, size=settings.load_history)]
            body["history"] = history.tolist()
        body["candidates"] = candidate_list(settings, catalogue, size, rng).tolist()
        body["top_k"] = settings.load_top_k
        bodies.append(orjson.dumps(body))
    return bodies


@functools.cache
def body_pool() -> tuple[str, ...]:
    """The bodies every Locust user of this process cycles through: drawn once, from the
    environment's settings."""
    settings = LoadSettings()
    settings.catalogue()  # a missing catalogue is the error to report, before any user lookup
    bodies = draw_bodies(settings, settings.load_bodies, user_pool(settings))
    return tuple(body.decode() for body in bodies)


@dataclass(frozen=True)
class ShapeStage:
    """One stage of the load shape: `users` Locust users, started (or stopped) at `spawn_rate`
    per second, for `seconds`."""

    name: str
    seconds: float
    users: int
    spawn_rate: float


def shape_stages(settings: LoadSettings) -> tuple[ShapeStage, ...]:
    """Ramp to the steady users, hold, spike, recover at the steady users (empty stages left
    out). The ramp's rate starts the steady users exactly over the ramp."""
    steady = settings.load_shape_users
    ramp_rate = steady / settings.load_shape_ramp_seconds
    spike_rate = settings.load_shape_spike_spawn_rate
    stages = (
        ShapeStage("ramp", settings.load_shape_ramp_seconds, steady, ramp_rate),
        ShapeStage("steady", settings.load_shape_steady_seconds, steady, ramp_rate),
        ShapeStage(
            "spike", settings.load_shape_spike_seconds, settings.load_shape_spike_users, spike_rate
        ),
        ShapeStage("recovery", settings.load_shape_recovery_seconds, steady, spike_rate),
    )
    return tuple(stage for stage in stages if stage.seconds > 0)


def stage_at(stages: tuple[ShapeStage, ...], run_time: float) -> ShapeStage | None:
    """The stage running `run_time` seconds into the shape; None once every stage is over."""
    end = 0.0
    for stage in stages:
        end += stage.seconds
        if run_time < end:
            return stage
    return None
