"""Prometheus metrics of the request path, in a registry owned by one app instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# 0.1 ms .. 1 s: resolves the sub-millisecond stages and the tail alike.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
CANDIDATE_BUCKETS = (0, 10, 100, 500, 1_000, 2_000, 5_000, 10_000, 20_000)
STAGES = ("parse", "features", "user_tower", "gather", "scorer", "topk", "serialize")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "prerank_stage_seconds",
            "Latency of each stage of /prerank",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "prerank_request_seconds",
            "Latency of /prerank, parse to serialised response",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.candidates = Histogram(
            "prerank_candidates",
            "Candidates per /prerank request",
            buckets=CANDIDATE_BUCKETS,
            registry=self.registry,
        )
        self.unknown_items = Counter(
            "prerank_unknown_items",
            "Candidate ids absent from the active snapshot",
            registry=self.registry,
        )
        self.requests = Counter(
            "prerank_requests",
            "/prerank requests by HTTP status",
            ["status"],
            registry=self.registry,
        )
        self.user_source = Counter(
            "prerank_user_source",
            "Where the user's features came from",
            ["source"],
            registry=self.registry,
        )
        self.active_version = Gauge(
            "prerank_active_version",
            "1 for the version being served",
            ["version", "model"],
            registry=self.registry,
        )

    def set_active(self, version: str, model: str) -> None:
        self.active_version.clear()
        self.active_version.labels(version=version, model=model).set(1)
