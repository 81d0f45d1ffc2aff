"""Prometheus metrics of the request path and the model lifecycle, in a registry owned by one app
instance. Every request metric carries the A/B `arm` label, so a dashboard compares the arms.

With several workers (`service.workers`), prometheus_client's multiprocess mode writes every value
to a shared directory and `exposition()` sums the workers; each gauge says how its workers'
values combine (`multiprocess_mode`)."""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from prerank_contract.traffic import CONTROL, TREATMENT, Arm

# 0.1 ms .. 1 s: resolves the sub-millisecond stages and the tail alike.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
CANDIDATE_BUCKETS = (0, 10, 100, 500, 1_000, 2_000, 5_000, 10_000, 20_000)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
FALLBACK_STAGE = "fallback"  # instead of user_tower/scorer when the deadline has passed
NO_ARM = "none"  # requests answered before a user was assigned to an arm (4xx, 503)


class ArmDescription(NamedTuple):
    """What one arm serves, for the metrics."""

    version: str
    model: str
    share: float  # of users
    created: float  # Unix time the version was trained


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by the worker supervisor


class _Discard:
    """Stands in for every metric of a `Metrics(record=False)`: warm-up requests run the whole
    request path and must leave no trace in the served metrics (nor in multiprocess files)."""

    def labels(self, *values: str, **labels: str) -> _Discard:
        return self

    def inc(self, amount: float = 1.0) -> None: ...

    def observe(self, value: float) -> None: ...

    def set(self, value: float) -> None: ...

    def set_to_current_time(self) -> None: ...


class Metrics:
    def __init__(self, record: bool = True) -> None:
        """Declare every metric (`record=False`: discard every value). Longer than a function
        should be, as one flat list: each declaration's name, help and labels document it."""
        self.registry = CollectorRegistry()
        self._serving_labels: list[dict[str, str]] = []  # of the arms last set as serving
        self._record = record
        self.stage_seconds = self._make(
            Histogram,
            "prerank_stage_seconds",
            "Latency of each stage of /prerank",
            ["stage", "arm"],
            buckets=LATENCY_BUCKETS,
        )
        self.request_seconds = self._make(
            Histogram,
            "prerank_request_seconds",
            "Latency of /prerank, parse to serialised response",
            ["arm"],
            buckets=LATENCY_BUCKETS,
        )
        self.candidates = self._make(
            Histogram,
            "prerank_candidates",
            "Candidates per /prerank request",
            ["arm"],
            buckets=CANDIDATE_BUCKETS,
        )
        self.unknown_items = self._make(
            Counter,
            "prerank_unknown_items",
            "Candidate ids absent from the serving snapshot",
            ["arm"],
        )
        self.requests = self._make(
            Counter,
            "prerank_requests",
            "/prerank requests by HTTP status",
            ["status", "arm"],
        )
        self.user_source = self._make(
            Counter,
            "prerank_user_source",
            "Where the user's features came from",
            ["source", "arm"],
        )
        self.active_version = self._make(
            Gauge,
            "prerank_active_version",
            "1 for each version taking traffic, by arm",
            ["version", "model", "arm"],
            multiprocess_mode="livemax",
        )
        self.traffic_share = self._make(
            Gauge,
            "prerank_traffic_share",
            "Share of users assigned to each arm",
            ["arm"],
            multiprocess_mode="livemax",
        )
        self.model_loads = self._make(
            Counter,
            "prerank_model_loads",
            "Versions the service tried to load: loaded, refused (checksum, manifest, gate or "
            "warm-up failed) or error (Redis unreachable, retried)",
            ["result"],
        )
        self.model_load_seconds = self._make(
            Histogram,
            "prerank_model_load_seconds",
            "Time to load, verify and warm up a version",
            buckets=LOAD_BUCKETS,
        )
        self.in_flight = self._make(
            Gauge,
            "prerank_in_flight",
            "/prerank requests being answered (beyond PRERANK_MAX_IN_FLIGHT: 503)",
            multiprocess_mode="livesum",
        )
        self.degraded = self._make(
            Counter,
            "prerank_degraded_answers",
            "/prerank answers flagged degraded: feature_store (Redis unreadable, request or "
            "cold-start features used), feature_store_lost (the store's presence marker vanished "
            "from Redis) or deadline (past it, the cheap fallback order)",
            ["reason", "arm"],
        )
        self.feature_store_up = self._make(
            Gauge,
            "prerank_feature_store_up",
            "1 while the feature store answers, 0 while it is skipped after a failure (backoff)",
            multiprocess_mode="livemin",
        )
        self.feature_store_lost = self._make(
            Gauge,
            "prerank_feature_store_lost",
            "1 while the feature store of a serving model is gone from Redis (its presence marker, "
            "seen before, vanished): every answer is flagged feature_store_lost",
            multiprocess_mode="livemax",
        )
        self.active_pointer_missing = self._make(
            Gauge,
            "prerank_active_pointer_missing",
            "1 while Redis's active pointer, seen before, is gone (serving from memory)",
            multiprocess_mode="livemax",
        )
        self.snapshot_created = self._make(
            Gauge,
            "prerank_snapshot_created_timestamp_seconds",
            "Unix time the serving version of each arm was trained (its manifest's created_at)",
            ["arm"],
            multiprocess_mode="livemin",
        )
        self.pointer_checked = self._make(
            Gauge,
            "prerank_pointer_checked_timestamp_seconds",
            "Unix time of the last successful read of Redis's active pointer",
            multiprocess_mode="livemin",
        )

    def _make(self, kind: type, *args: Any, **kwargs: Any) -> Any:
        if not self._record:
            return _Discard()
        if kind is not Gauge:
            kwargs.pop("multiprocess_mode", None)
        return kind(*args, registry=self.registry, **kwargs)

    def set_serving(self, arms: dict[Arm, ArmDescription]) -> None:
        """Mark what each arm serves now. The previous labels are set to 0, not removed: in
        multiprocess mode a removed label would keep its last value in this worker's file."""
        for labels in self._serving_labels:
            self.active_version.labels(**labels).set(0)
        self._serving_labels = []
        for arm, served in arms.items():
            labels = {"version": served.version, "model": served.model, "arm": arm}
            self.active_version.labels(**labels).set(1)
            self._serving_labels.append(labels)
            self.traffic_share.labels(arm=arm).set(served.share)
            self.snapshot_created.labels(arm=arm).set(served.created)
        for arm in {CONTROL, TREATMENT} - set(arms):  # an arm no longer served
            self.traffic_share.labels(arm=arm).set(0)
            self.snapshot_created.labels(arm=arm).set(math.nan)

    def exposition(self) -> bytes:
        """The text format of /metrics: this app's registry, or, under several workers, every
        worker's values combined."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
