"""The state the routes read, owned by one app instance."""

from __future__ import annotations

from dataclasses import dataclass, field

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

    def pick(self, user_id: int) -> tuple[Snapshot, Arm]:
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
