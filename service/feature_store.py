"""The online feature store: a user's profile and recent behaviours, read from Redis.

When a read fails, the store is skipped for a backoff that doubles with each failed probe (from
`backoff_seconds` to `backoff_max_seconds`): requests meanwhile are answered degraded at once
instead of each waiting on a dead connection, and one request per backoff probes Redis again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Gauge

from prerank_contract.keys import RedisKeys
from prerank_contract.redis_client import REDIS_ERRORS, RedisClient

log = logging.getLogger(__name__)

UserRecord = dict[str, Any]


class FeatureStoreUnavailableError(Exception):
    """Redis could not be read (or is in backoff): the caller answers in degraded mode."""


@dataclass(frozen=True)
class Outage:
    """Why the store is skipped, since when (Unix time) and until when (monotonic)."""

    error: str
    since: float
    failures: int
    retry_at: float


class FeatureStore:
    def __init__(
        self,
        client: RedisClient | None,
        keys: RedisKeys,
        backoff_seconds: float,
        backoff_max_seconds: float,
        up: Gauge | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self._up = up
        self._lock = threading.Lock()
        self.outage: Outage | None = None  # None while Redis answers
        if up is not None:
            up.set(0 if client is None else 1)

    @classmethod
    def offline(cls, keys: RedisKeys) -> FeatureStore:
        """A store without Redis (warm-up, an app before its lifespan connects): every user is
        unknown to it, and no answer is degraded. Without a client it never backs off."""
        return cls(None, keys, backoff_seconds=0.0, backoff_max_seconds=0.0)

    def get(self, schema_fingerprint: str, user_id: int) -> UserRecord | None:
        """{"features": {field: value}, "history": [item ids]} or None for an unknown user.

        Records are read under the fingerprint of the serving model's feature schema, so a model
        never reads features encoded for another schema. Without a client (a deployment without
        Redis, PRERANK_USE_REDIS=false) there is no store to read: every user is unknown to it,
        which is not a degraded answer."""
        if self.client is None:
            return None
        self._claim_probe()
        try:
            raw = self.client.get(self.keys.user(schema_fingerprint, user_id))
        except REDIS_ERRORS as exc:
            self._failed(exc)
            raise FeatureStoreUnavailableError(str(exc)) from exc
        if self.outage is not None:
            self._recovered()
        return None if raw is None else orjson.loads(raw)

    def _claim_probe(self) -> None:
        """Raise while in backoff; past it, let exactly one caller through to probe Redis."""
        outage = self.outage
        if outage is None:
            return
        with self._lock:
            outage = self.outage
            if outage is None:
                return
            now = time.monotonic()
            if now < outage.retry_at:
                raise FeatureStoreUnavailableError(f"in backoff after: {outage.error}")
            # the probe: later callers wait for its outcome as if still in backoff
            self.outage = Outage(outage.error, outage.since, outage.failures, now + self._delay(1))

    def _delay(self, failures: int) -> float:
        return min(self.backoff_seconds * 2 ** (failures - 1), self.backoff_max_seconds)

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            previous = self.outage
            failures = 1 if previous is None else previous.failures + 1
            since = time.time() if previous is None else previous.since
            delay = self._delay(failures)
            self.outage = Outage(str(exc), since, failures, time.monotonic() + delay)
        if previous is None:
            log.warning("feature store unreadable (%s); answering degraded", exc)
        if self._up is not None:
            self._up.set(0)

    def _recovered(self) -> None:
        with self._lock:
            outage, self.outage = self.outage, None
        if outage is not None:
            log.info("feature store answers again after %.1f s", time.time() - outage.since)
        if self._up is not None:
            self._up.set(1)

    def describe(self) -> str | None:
        """Why answers are degraded, for /readyz; None while the store answers (or when there is
        no store by configuration)."""
        outage = self.outage
        if outage is None:
            return None
        wait = max(outage.retry_at - time.monotonic(), 0.0)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(outage.since))
        return (
            f"Redis unreadable since {started} ({outage.failures} failed reads, next try in "
            f"{wait:.1f} s): {outage.error}"
        )
