"""Hot swap: follow Redis's pointers, load a new version in the background, verify it, warm it up
with real requests, then swap it in with one reference assignment.

A version that fails any step (checksum, manifest, gate, warm-up) is refused: logged with the
reason, counted in `prerank_model_loads_total{result="refused"}`, not retried before
`refused_retry_seconds`, and the serving versions keep answering. A Redis error is not a refusal:
the pointer is read again at the next poll.

Each poll also checks, in the same round trip, that the presence markers of what serves are still
in Redis (`PresenceWatch`): Redis that lost its data is noticed at once, not inferred from worse
answers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from prerank_contract.bundle import BundleError
from prerank_contract.gate import gate_overridden, gate_problems
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_client import REDIS_ERRORS
from prerank_contract.redis_store import parse_split, read_pointers, read_version
from prerank_contract.traffic import CONTROL, TREATMENT, Arm, TrafficSplit
from service.bundle_cache import BundleCache
from service.feature_store import FeatureStore
from service.metrics import ArmDescription, Metrics
from service.ranking import rank
from service.settings import ServiceSettings
from service.snapshot import Snapshot
from service.state import Lost, RedisLoss, Refusal, ServiceState, Serving

log = logging.getLogger(__name__)

WARMUP_SEED = 0  # warm-up requests are drawn from the catalogue with a fixed seed


class RefusedVersionError(Exception):
    """A version that must not take traffic; the message says why."""


def check_gate(snapshot: Snapshot, settings: ServiceSettings) -> None:
    """The service's side of the publish gate: parity and the AUC floor, unless an operator's
    override is recorded in the manifest."""
    if gate_overridden(snapshot.manifest):
        return
    problems = gate_problems(snapshot.manifest, settings.gate)
    if problems:
        raise RefusedVersionError("gate: " + "; ".join(problems))


def warm_up(snapshot: Snapshot, settings: ServiceSettings) -> None:
    """Answer `warmup_requests` real /prerank bodies (catalogue ids, a history) with `snapshot`
    through the whole request path; refuse it unless every score is a finite probability."""
    rng = np.random.default_rng(WARMUP_SEED)
    serving = Serving(snapshot)
    offline_store = FeatureStore.offline(settings.keys)  # warm-up never waits on the network
    scratch = Metrics(record=False)  # warm-up is not traffic: it stays out of the served metrics
    size = min(settings.warmup_candidates, settings.max_candidates, snapshot.item_ids.size)
    history_length = snapshot.manifest.feature_schema.max_history
    codec = snapshot.vocabulary  # the bodies speak the caller's ids, as traffic does
    for request in range(settings.warmup_requests):
        rows = rng.choice(snapshot.item_ids.size, size=size, replace=False)
        ids = codec.raw_item_ids(snapshot.item_ids[rows])
        body = orjson.dumps(
            {
                "user_id": codec.raw_user_id(request),
                "history": ids[:history_length],
                "candidates": ids,
            }
        )
        answer = rank(
            body,
            serving,
            offline_store,
            scratch,
            settings.max_candidates,
            settings.max_request_history,
        )
        items = orjson.loads(answer.payload)["items"]
        scores = [item["score"] for item in items]
        if len(items) != size or not all(
            s is not None and math.isfinite(s) and 0 <= s <= 1 for s in scores
        ):
            raise RefusedVersionError(
                f"warm-up: {len(items)} of {size} candidates scored, or a score that is not a "
                "finite probability"
            )
    if not np.all(np.isfinite(snapshot.fallback_logits)):  # computed here, before any traffic
        raise RefusedVersionError("warm-up: a fallback (cold-start) score is not finite")


def prepare(load: Callable[[], Snapshot], settings: ServiceSettings) -> Snapshot:
    """Load, gate and warm a snapshot; RefusedVersionError (or BundleError) when it must not
    serve."""
    snapshot = load()
    check_gate(snapshot, settings)
    warm_up(snapshot, settings)
    return snapshot


def release_memory() -> None:
    """Collect the released snapshot now and hand freed heap pages back to the OS (glibc)."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


class PresenceWatch:
    """Which presence markers of what serves (`prerank_contract.markers`), and the active
    pointer, this process has seen in Redis, and which of them vanished since.

    The rule: a key counts as lost only once this process has seen it and then finds it gone.
    So a deployment that never published a marked feature store (a fresh Redis, a store written
    before markers existed; PRERANK_USE_REDIS=false has no follower at all) is never flagged, and
    neither is a service started on an already empty Redis (the cold-start alert is the net
    there). Answers are flagged `feature_store_lost` only for the store of a serving model's
    schema; a vanished version marker or pointer is named in /readyz, since answers computed from
    memory do not change with them. A key that comes back (publish again) clears at the next
    poll; a key of what no longer serves is forgotten.
    """

    def __init__(self, keys: RedisKeys) -> None:
        self.keys = keys
        self._seen: set[str] = set()  # keys found present at least once
        self._gone: dict[str, float] = {}  # seen keys now absent -> Unix time first found absent

    def watched(self, serving: Serving | None) -> list[str]:
        """The marker keys to read beside the pointers: each serving version's, and the store of
        each serving schema."""
        if serving is None:
            return []
        found = set()
        for snapshot in serving.arms.values():
            found.add(self.keys.version_marker(snapshot.version))
            found.add(self.keys.store_marker(snapshot.manifest.feature_store))
        return sorted(found)

    def update(
        self, serving: Serving | None, active: str | None, present: Mapping[str, bool]
    ) -> RedisLoss:
        """Record one poll's findings (`present`: watched key -> found) and return what is lost."""
        now = time.time()
        found = {**present, self.keys.active: active is not None}
        for key, here in found.items():
            if here:
                self._seen.add(key)
                self._gone.pop(key, None)
            elif key in self._seen:
                self._gone.setdefault(key, now)
        for key in set(self._gone) - set(found):
            del self._gone[key]
        if serving is None:
            return RedisLoss()
        stores, versions = {}, {}
        for snapshot in serving.arms.values():
            schema = snapshot.manifest.feature_store
            if (store := self._lost(self.keys.store_marker(schema))) is not None:
                stores[schema] = store
            if (version := self._lost(self.keys.version_marker(snapshot.version))) is not None:
                versions[snapshot.version] = version
        return RedisLoss(stores, versions, self._lost(self.keys.active))

    def _lost(self, key: str) -> Lost | None:
        since = self._gone.get(key)
        return None if since is None else Lost(key, since)


class ModelFollower:
    """Keeps `state.serving` equal to what Redis's `active` and `split` keys name."""

    def __init__(self, state: ServiceState, client: Any, cache: BundleCache | None = None) -> None:
        self.state = state
        self.client = client
        self.cache = cache  # where the active version is also kept on disk
        self.settings = state.settings
        self._seen: tuple[str, TrafficSplit | None] | None = None
        self.presence = PresenceWatch(self.settings.keys)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def redis_error(self) -> str | None:
        """Why Redis could not be read at the last poll (None when it could)."""
        return self.state.pointer_error

    def start(self) -> None:
        if self.settings.poll_interval_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="model-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.follower_stop_seconds)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.poll_interval_seconds):
            try:
                self.poll_once()
            except Exception:  # the follower must outlive any surprise; the next poll retries
                log.exception("model follower: unexpected error")

    def read_pointers(self) -> tuple[str | None, TrafficSplit | None] | None:
        """Redis's (active, split), read in one pipelined round trip with the presence markers
        of what serves (which update `state.loss`); None when Redis cannot be read."""
        keys = self.settings.keys
        serving = self.state.serving
        watched = self.presence.watched(serving)
        try:
            pointers = read_pointers(self.client, keys, watched)
        except REDIS_ERRORS as exc:
            if self.redis_error is None:
                log.warning("cannot read the active pointer (%s); serving what is loaded", exc)
            self.state.pointer_error = (
                f"Redis at {self.settings.redis_url_redacted} not readable: {exc}"
            )
            return None
        if self.redis_error is not None:
            log.info("Redis answers again")
        self.state.pointer_error = None
        self.state.metrics.pointer_checked.set_to_current_time()
        try:
            split = parse_split(pointers.raw_split, keys.split)
        except ValueError as exc:
            log.warning("ignoring the A/B split: %s", exc)
            split = None
        self._note_loss(serving, pointers.active, pointers.present)
        return pointers.active, split

    def _note_loss(
        self, serving: Serving | None, active: str | None, present: Mapping[str, bool]
    ) -> None:
        """Publish this poll's `RedisLoss` to the routes and the metrics; log what changed."""
        before = self.state.loss.describe()
        loss = self.presence.update(serving, active, present)
        self.state.loss = loss  # one reference assignment, read by every request
        self.state.metrics.feature_store_lost.set(1 if loss.stores else 0)
        self.state.metrics.active_pointer_missing.set(0 if loss.pointer is None else 1)
        after = loss.describe()
        for part, detail in after.items():
            if part not in before:
                log.error("Redis lost data: %s", detail)
        for part in set(before) - set(after):
            log.info("Redis holds what was lost again: %s cleared", part)

    def poll_once(self) -> bool:
        """Read the pointers and apply them when they changed; True when `serving` changed."""
        pointers = self.read_pointers()
        if pointers is None:
            return False
        active, split = pointers
        if active is None or (active, split) == self._seen:
            return False
        return self.apply(active, split)

    def apply(self, active: str, split: TrafficSplit | None) -> bool:
        """Build the serving state for (active, split) and swap it in; keep the current one for
        any arm whose version is refused."""
        current = self.state.serving
        control = self._obtain(active, CONTROL, current)
        if control is None:
            return False
        treatment = None
        wants_treatment = split is not None and split.share > 0 and split.version != active
        if split is not None and wants_treatment:
            treatment = self._obtain(split.version, TREATMENT, current)
        serving = Serving(control, treatment, split if treatment is not None else None)
        # settled unless an arm is still missing: then the next poll tries it again (refused
        # versions only after refused_retry_seconds)
        self._seen = None if wants_treatment and treatment is None else (active, split)
        if current is not None and _same(current, serving):
            return False
        self.state.serving = serving  # the swap: one reference assignment
        self.state.not_ready_reason = ""
        self.state.metrics.set_serving(describe(serving))
        log.info("serving %s", {arm: s.version for arm, s in serving.arms.items()})
        del current
        release_memory()
        return True

    def _obtain(self, version: str, arm: Arm, current: Serving | None) -> Snapshot | None:
        """The snapshot of `version`: reused when already serving, else loaded and prepared;
        None when refused (recorded) or when Redis failed (retried at the next poll)."""
        if current is not None:
            for snapshot in current.arms.values():
                if snapshot.version == version:
                    return snapshot
        refusal = self.state.refusals.get(version)
        if refusal is not None and time.monotonic() - refusal.at < (
            self.settings.refused_retry_seconds
        ):
            return None
        started = time.perf_counter()
        metrics = self.state.metrics

        def load() -> Snapshot:
            manifest, files = read_version(self.client, self.settings.keys, version)
            source = f"redis:{self.settings.keys.manifest(version)}"
            if self.cache is not None:  # on disk first: the item table is mapped from there
                try:
                    path = self.cache.store(manifest, files, make_current=arm == CONTROL)
                except OSError as exc:  # the cache is a convenience: never a reason to refuse
                    log.warning("could not cache %s in %s: %s", version, self.cache.root, exc)
                else:
                    return Snapshot.from_dir(path, self.settings, mmap=True, source=source)
            return Snapshot.from_files(manifest, files, source, self.settings)

        try:
            snapshot = prepare(load, self.settings)
        except REDIS_ERRORS as exc:
            metrics.model_loads.labels(result="error").inc()
            log.warning("loading %s failed on Redis (%s); retrying at the next poll", version, exc)
            return None
        except (BundleError, RefusedVersionError) as exc:
            metrics.model_loads.labels(result="refused").inc()
            self.state.refusals[version] = Refusal(version, str(exc), time.monotonic())
            log.error("refused version %s for the %s arm: %s", version, arm, exc)
            if self.state.serving is None:
                self.state.not_ready_reason = f"no model loaded: {version} refused: {exc}"
            return None
        self.state.refusals.pop(version, None)
        seconds = time.perf_counter() - started
        metrics.model_loads.labels(result="loaded").inc()
        metrics.model_load_seconds.observe(seconds)
        log.info("loaded %s for the %s arm in %.2f s", version, arm, seconds)
        return snapshot


def _same(a: Serving, b: Serving) -> bool:
    return a.control is b.control and a.treatment is b.treatment and a.split == b.split


def describe(serving: Serving) -> dict[Arm, ArmDescription]:
    """What each arm serves, for the metrics."""
    shares = serving.shares
    return {
        arm: ArmDescription(
            snapshot.version,
            snapshot.manifest.model_name,
            shares[arm],
            _timestamp(snapshot.manifest.created_at),
        )
        for arm, snapshot in serving.arms.items()
    }


def _timestamp(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return math.nan
