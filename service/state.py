"""The state the routes read, owned by one app instance."""

from __future__ import annotations

from dataclasses import dataclass

from service.feature_store import FeatureStore
from service.metrics import Metrics
from service.settings import ServiceSettings
from service.snapshot import Snapshot


@dataclass
class ServiceState:
    """What the routes read; `snapshot` is replaced whole, never mutated."""

    settings: ServiceSettings
    metrics: Metrics
    store: FeatureStore
    snapshot: Snapshot | None = None
    not_ready_reason: str = "starting"

    @property
    def ready(self) -> bool:
        """A version is loaded and warmed: the snapshot is only assigned after warm-up."""
        return self.snapshot is not None
