"""The benchmark's goals, each a ratio of one run on one machine against its limit
(`BenchSettings.bench_*_goal`): PASS or MISS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from research.bench.latency_passes import LatencyRow
from research.bench.scoring_paths import ScoringPaths
from research.bench.targets import ECHO, FIT, TWO_TOWER
from research.bench.throughput import RateStep, Throughput, error_kinds_note
from research.settings import BenchSettings

PAPER_TWO_TOWER_RATIO = 1.06  # FIT / Two-Tower latency the paper reports


@dataclass(frozen=True)
class Verdict:
    """One goal: a ratio against its limit."""

    goal: str
    value: float | None  # None: not measured
    limit: float
    at_most: bool  # the value must be <= limit (else >=)
    detail: str  # the figures behind the value, or why it was not measured

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    @property
    def status(self) -> str:
        if self.value is None:
            return f"MISS (not measured: {self.detail})"
        return "PASS" if self.passed else "MISS"

    @property
    def shown_value(self) -> str:
        return "-" if self.value is None else f"{self.value:.2f}"

    @property
    def sign(self) -> str:
        return "<=" if self.at_most else ">="

    def line(self) -> str:
        return (
            f"{self.status:<6} {self.goal}: {self.shown_value} ({self.sign} {self.limit:g}); "
            f"{self.detail}"
        )


def p50_of(rows: Sequence[LatencyRow], target: str, candidates: int) -> float | None:
    found = [r.p50_ms for r in rows if r.target == target and r.candidates == candidates]
    return found[0] if found else None


def echo_floor_verdict(rows: Sequence[LatencyRow], settings: BenchSettings) -> Verdict:
    candidates, limit = settings.bench_echo_floor_candidates, settings.bench_echo_floor_goal
    goal = f"/prerank FIT p50 / echo floor p50 at {candidates:,} candidates"
    fit, echo = p50_of(rows, FIT, candidates), p50_of(rows, ECHO, candidates)
    if fit is None or echo is None:
        missing = f"{candidates:,} candidates not in PRERANK_BENCH_CANDIDATES"
        return Verdict(goal, None, limit, True, missing)
    return Verdict(goal, fit / echo, limit, True, f"FIT {fit:.2f} ms, echo {echo:.2f} ms")


def two_tower_verdict(rows: Sequence[LatencyRow], settings: BenchSettings) -> Verdict:
    counts, limit = settings.bench_two_tower_candidates, settings.bench_two_tower_goal
    goal = f"FIT p50 / Two-Tower p50 at {' and '.join(f'{n:,}' for n in counts)} candidates"
    goal += " (the larger)"
    ratios = {}
    for candidates in counts:
        fit, two_tower = p50_of(rows, FIT, candidates), p50_of(rows, TWO_TOWER, candidates)
        if fit is None or two_tower is None:
            missing = f"{candidates:,} candidates not in PRERANK_BENCH_CANDIDATES"
            return Verdict(goal, None, limit, True, missing)
        ratios[candidates] = (fit / two_tower, fit, two_tower)
    detail = "; ".join(
        f"{n:,}: {ratio:.3f} ({fit:.2f} / {tt:.2f} ms)" for n, (ratio, fit, tt) in ratios.items()
    )
    worst = max(ratio for ratio, _, _ in ratios.values())
    return Verdict(goal, worst, limit, True, f"{detail}; paper {PAPER_TWO_TOWER_RATIO}")


def scoring_verdict(scoring: ScoringPaths | None, settings: BenchSettings) -> Verdict:
    goal = "full model per pair / decoupled scoring, in process"
    limit = settings.bench_scoring_speedup_goal
    if scoring is None:
        return Verdict(goal, None, limit, False, "no FIT bundle timed")
    detail = (
        f"{scoring.candidates:,} candidates: decoupled {scoring.decoupled_ms:.2f} ms, "
        f"per pair {scoring.per_pair_ms:.2f} ms"
    )
    return Verdict(goal, scoring.speedup, limit, False, detail)


def throughput_verdict(throughput: Throughput, settings: BenchSettings) -> Verdict:
    goal = (
        f"{throughput.workers} workers, {throughput.candidates:,} candidates: req/s held with "
        f"p99 <= {settings.bench_tail_ratio_limit:g} x p50 and zero errors"
    )
    limit = settings.bench_throughput_goal
    if throughput.not_measured is not None:
        return Verdict(goal, None, limit, False, throughput.not_measured)
    best, last = throughput.best, throughput.steps[-1]
    held = (
        "no rate held"
        if best is None
        else f"held {best.rate:g}/s (p50 {best.p50_ms:.2f}, p99 {best.p99_ms:.2f} ms, "
        f"generator CPU {best.generator_cpu_percent:.0f}%)"
    )
    broke = (
        f"broke at {last.rate:g}/s ({describe_break(last, settings)})"
        if not last.held
        else "every rate tried held"
    )
    value = 0.0 if best is None else best.rate
    return Verdict(goal, value, limit, False, f"{held}; {broke}")


def describe_break(step: RateStep, settings: BenchSettings) -> str:
    """Why a rate did not hold: errors, the tail, or answers falling behind."""
    tail_limit = settings.bench_tail_ratio_limit
    reasons = []
    if step.errors:
        reasons.append(f"{step.errors} errors{error_kinds_note(step.error_kinds)}")
    if step.p99_ms > tail_limit * step.p50_ms:
        reasons.append(f"p99 {step.p99_ms:.1f} ms > {tail_limit:g} x p50 {step.p50_ms:.1f}")
    if not reasons:
        reasons.append(f"answers at {step.completed_rate:.0f}/s fell behind")
    return ", ".join(reasons)


def verdicts_of(
    rows: Sequence[LatencyRow],
    scoring: ScoringPaths | None,
    throughput: Throughput,
    settings: BenchSettings,
) -> list[Verdict]:
    """Every goal of one run, in the report's order."""
    return [
        echo_floor_verdict(rows, settings),
        two_tower_verdict(rows, settings),
        scoring_verdict(scoring, settings),
        throughput_verdict(throughput, settings),
    ]
