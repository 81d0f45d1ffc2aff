"""Measurements with given numbers, for the verdict and report tests (no server involved)."""

from __future__ import annotations

from research.bench.latency_passes import LatencyRow
from research.bench.scorer_efficiency import ScorerEfficiency, ScorerShapes, scorer_flops
from research.bench.scoring_paths import ScoringPaths
from research.bench.throughput import RateStep, Throughput, rate_holds
from research.bench.wire_formats import JSON_WIRE
from research.settings import BenchSettings

GOALS = BenchSettings()  # the default goals and limits
DEFAULT_SHAPES = ScorerShapes(
    meta_queries=32, user_heads=4, item_heads=4, head_dim=16, row_dim=8, col_dim=8
)  # the default ModelConfig's: 704 multiply-adds per candidate


def row(target: str, candidates: int, p50_ms: float, wire: str = JSON_WIRE) -> LatencyRow:
    return LatencyRow(
        target=target,
        wire=wire,
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


def throughput(target: str, steps: list[RateStep], wire: str = JSON_WIRE) -> Throughput:
    return Throughput(target, wire, 2, 3, 1_000, steps)


def efficiency(median_ms: float, gemm_gflops: float, candidates: int = 5_000) -> ScorerEfficiency:
    """The default shapes' scorer at `candidates` timed at `median_ms`."""
    flops = scorer_flops(DEFAULT_SHAPES, candidates)
    return ScorerEfficiency(
        candidates, DEFAULT_SHAPES, flops, median_ms, median_ms, 10, gemm_gflops, 512
    )
