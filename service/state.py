"""The state the routes read, owned by one app instance."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from prerank_contract.traffic import CONTROL, TREATMENT, Arm, TrafficSplit, assign_arm
from service.feature_store import FeatureStore
from service.metrics import Metrics
from service.settings import ServiceSettings
from service.snapshot import Snapshot


@dataclass(frozen=True)
class Serving:
    """What takes traffic: the active version (control) and, under an A/B split, a treatment
    version for `split.share` of users. Replaced whole by a hot swap, never mutated, so one
    request that reads it once is scored by one version."""

    control: Snapshot
    treatment: Snapshot | None = None
    split: TrafficSplit | None = None

    def pick(self, user_id: int | str) -> tuple[Snapshot, Arm]:
        """The snapshot that scores `user_id` and its arm (stable per user)."""
        if self.treatment is not None and assign_arm(user_id, self.split) == TREATMENT:
            return self.treatment, TREATMENT
        return self.control, CONTROL

    @property
    def shares(self) -> dict[Arm, float]:
        """The share of users each serving arm answers."""
        treated = self.split.share if self.treatment is not None and self.split else 0.0
        return {arm: treated if arm == TREATMENT else 1.0 - treated for arm in self.arms}

    @property
    def arms(self) -> dict[Arm, Snapshot]:
        arms: dict[Arm, Snapshot] = {CONTROL: self.control}
        if self.treatment is not None:
            arms[TREATMENT] = self.treatment
        return arms


@dataclass(frozen=True)
class Refusal:
    """A version the service would not serve: why, and when (monotonic seconds)."""

    version: str
    reason: str
    at: float


def utc_iso(unix_seconds: float) -> str:
    """A Unix time as UTC ISO 8601 to the second, as /readyz writes times."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_seconds))


class Lost(NamedTuple):
    """A key this process saw in Redis that is gone now, and since when (Unix time)."""

    key: str
    since: float


@dataclass(frozen=True)
class RedisLoss:
    """What serves here but vanished from Redis after this process had seen it there. Replaced
    whole by the follower at each poll that reads Redis; empty while nothing was lost."""

    stores: Mapping[str, Lost] = field(default_factory=dict)  # by schema fingerprint
    versions: Mapping[str, Lost] = field(default_factory=dict)  # by version id
    pointer: Lost | None = None  # the active pointer

    def describe(self) -> dict[str, str]:
        """What was lost, in words for /readyz's `degraded`, by part."""
        described = {}
        if self.stores:
            described["feature_store_lost"] = "; ".join(
                f"the feature store of schema {schema} (marker {lost.key}) is gone from Redis "
                f"since {utc_iso(lost.since)}: every answer of its models is flagged "
                "feature_store_lost and users read as cold starts until it is published again"
                for schema, lost in self.stores.items()
            )
        if self.pointer is not None:
            described["active_pointer_missing"] = (
                f"{self.pointer.key} is gone from Redis since {utc_iso(self.pointer.since)}: "
                "serving from memory; a replica started now finds no version"
            )
        if self.versions:
            described["version_lost"] = "; ".join(
                f"{version} (marker {lost.key}) is gone from Redis since {utc_iso(lost.since)}"
                for version, lost in self.versions.items()
            )
        return described


@dataclass
class ServiceState:
    """What the routes read; `serving` is replaced whole (one reference assignment)."""

    settings: ServiceSettings
    metrics: Metrics
    store: FeatureStore
    serving: Serving | None = None
    not_ready_reason: str = "starting"
    refusals: dict[str, Refusal] = field(default_factory=dict)
    in_flight: int = 0  # /prerank requests being answered (event-loop thread only)
    pointer_error: str | None = None  # why Redis's pointers could not be read at the last poll
    draining: bool = False  # SIGTERM received: not ready, still answering until the drain ends
    loss: RedisLoss = field(default_factory=RedisLoss)  # what Redis lost (`lifecycle`)
