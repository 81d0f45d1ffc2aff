"""Measurements with given numbers, for the verdict and report tests (no server involved)."""

from __future__ import annotations

from research.bench.latency_passes import LatencyRow
from research.bench.scoring_paths import ScoringPaths
from research.bench.throughput import RateStep, rate_holds
from research.settings import BenchSettings

GOALS = BenchSettings()  # the default goals and limits


def row(target: str, candidates: int, p50_ms: float) -> LatencyRow:
    return LatencyRow(
        target=target,
        candidates=candidates,
        known=candidates,
        requests=10,
        errors=0,
        deadline_fallbacks=0,
        p50_ms=p50_ms,
        p95_ms=p50_ms * 1.5,
        p99_ms=p50_ms * 2,
        requests_per_second=1000 / p50_ms,
        client_cpu_percent=20.0,
        server_cpu_percent=90.0,
        other_cpu_percent=1.0,
    )


def step(rate: float, p50_ms: float, p99_ms: float, errors: int = 0) -> RateStep:
    return RateStep(
        rate=rate,
        sent=int(rate),
        offered_rate=rate,
        completed_rate=rate,
        errors=errors,
        error_kinds={"503": errors} if errors else {},
        p50_ms=p50_ms,
        p99_ms=p99_ms,
        send_lag_p99_ms=0.1,
        generator_cpu_percent=30.0,
        server_cpu_percent=150.0,
        other_cpu_percent=2.0,
        held=rate_holds(p50_ms, p99_ms, errors, rate, rate, GOALS),
    )


def scoring(decoupled_ms: float, per_pair_ms: float) -> ScoringPaths:
    return ScoringPaths(5_000, decoupled_ms, per_pair_ms, 0.0, 0.0, 1e-6, 3, 1, "seeded")
