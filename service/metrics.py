"""Prometheus metrics of the request path and the model lifecycle, in a registry owned by one app
instance. Every request metric carries the A/B `arm` label, so a dashboard compares the arms."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from prerank_contract.traffic import Arm

# 0.1 ms .. 1 s: resolves the sub-millisecond stages and the tail alike.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
CANDIDATE_BUCKETS = (0, 10, 100, 500, 1_000, 2_000, 5_000, 10_000, 20_000)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STAGES = ("parse", "gather", "features", "user_tower", "scorer", "topk", "serialize")
FALLBACK_STAGE = "fallback"  # instead of user_tower/scorer when the deadline has passed
NO_ARM = "none"  # requests answered before a user was assigned to an arm (4xx, 503)
DEGRADED_REASONS = ("feature_store", "deadline")  # why an answer was flagged `degraded`


class ArmDescription(NamedTuple):
    """What one arm serves, for the metrics."""

    version: str
    model: str
    share: float  # of users
    created: float  # Unix time the version was trained


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "prerank_stage_seconds",
            "Latency of each stage of /prerank",
            ["stage", "arm"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "prerank_request_seconds",
            "Latency of /prerank, parse to serialised response",
            ["arm"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.candidates = Histogram(
            "prerank_candidates",
            "Candidates per /prerank request",
            ["arm"],
            buckets=CANDIDATE_BUCKETS,
            registry=self.registry,
        )
        self.unknown_items = Counter(
            "prerank_unknown_items",
            "Candidate ids absent from the serving snapshot",
            ["arm"],
            registry=self.registry,
        )
        self.requests = Counter(
            "prerank_requests",
            "/prerank requests by HTTP status",
            ["status", "arm"],
            registry=self.registry,
        )
        self.user_source = Counter(
            "prerank_user_source",
            "Where the user's features came from",
            ["source", "arm"],
            registry=self.registry,
        )
        self.active_version = Gauge(
            "prerank_active_version",
            "1 for each version taking traffic, by arm",
            ["version", "model", "arm"],
            registry=self.registry,
        )
        self.traffic_share = Gauge(
            "prerank_traffic_share",
            "Share of users assigned to each arm",
            ["arm"],
            registry=self.registry,
        )
        self.model_loads = Counter(
            "prerank_model_loads",
            "Versions the service tried to load: loaded, refused (checksum, manifest, gate or "
            "warm-up failed) or error (Redis unreachable, retried)",
            ["result"],
            registry=self.registry,
        )
        self.model_load_seconds = Histogram(
            "prerank_model_load_seconds",
            "Time to load, verify and warm up a version",
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "prerank_in_flight",
            "/prerank requests being answered (beyond PRERANK_MAX_IN_FLIGHT: 503)",
            registry=self.registry,
        )
        self.degraded = Counter(
            "prerank_degraded_answers",
            "/prerank answers flagged degraded: feature_store (Redis unreadable, request or "
            "cold-start features used) or deadline (past it, the cheap fallback order)",
            ["reason", "arm"],
            registry=self.registry,
        )
        self.feature_store_up = Gauge(
            "prerank_feature_store_up",
            "1 while the feature store answers, 0 while it is skipped after a failure (backoff)",
            registry=self.registry,
        )
        self.snapshot_created = Gauge(
            "prerank_snapshot_created_timestamp_seconds",
            "Unix time the serving version of each arm was trained (its manifest's created_at)",
            ["arm"],
            registry=self.registry,
        )
        self.pointer_checked = Gauge(
            "prerank_pointer_checked_timestamp_seconds",
            "Unix time of the last successful read of Redis's active pointer",
            registry=self.registry,
        )

    def set_serving(self, arms: dict[Arm, ArmDescription]) -> None:
        self.active_version.clear()
        self.traffic_share.clear()
        self.snapshot_created.clear()
        for arm, served in arms.items():
            self.active_version.labels(version=served.version, model=served.model, arm=arm).set(1)
            self.traffic_share.labels(arm=arm).set(served.share)
            self.snapshot_created.labels(arm=arm).set(served.created)
