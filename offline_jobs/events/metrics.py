"""The consumer's Prometheus metrics, on a port of its own (`events_metrics_port`), beside the
service's. A registry per consumer, so tests may run several in one process."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# A batch applies in about a millisecond when small, in tens of them when large.
BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class EventMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.applied = Counter(
            "prerank_events_applied", "events applied to a feature-store record", registry=r
        )
        self.duplicates = Counter(
            "prerank_events_duplicates",
            "events skipped: already applied (a redelivery) or superseded by newer ones",
            registry=r,
        )
        self.dead_lettered = Counter(
            "prerank_events_dead_lettered",
            "entries that could not be applied, moved to the dead-letter stream",
            registry=r,
        )
        self.conflicts = Counter(
            "prerank_events_write_conflicts",
            "records another consumer wrote between this one's read and write (read again)",
            registry=r,
        )
        self.redis_errors = Counter(
            "prerank_events_redis_errors", "failed Redis round trips (backed off)", registry=r
        )
        self.lost = Counter(
            "prerank_events_trimmed_unapplied",
            "pending entries trimmed from the stream before any consumer applied them",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "prerank_events_batch_seconds",
            "seconds to apply one batch: parse, read, update, write, ack",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "prerank_events_group_lag",
            "entries of the stream not yet delivered to the consumer group (XINFO GROUPS lag)",
            registry=r,
        )
        self.pending = Gauge(
            "prerank_events_group_pending",
            "entries delivered to the group and not yet acknowledged",
            registry=r,
        )

    def serve(self, port: int) -> None:
        """Serve /metrics on `port` (0: not served)."""
        if port:
            start_http_server(port, registry=self.registry)
