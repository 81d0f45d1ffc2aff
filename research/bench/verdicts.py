"""The benchmark's goals, each a ratio of one run on one machine against its limit
(`BenchSettings.bench_*_goal`): PASS or MISS. The naive per-pair path is measured beside them as
information, not judged: it says how slow that path is, not how fast ours is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from research.bench.latency_passes import LatencyRow
from research.bench.scorer_efficiency import ScorerEfficiency
from research.bench.targets import ECHO, FIT, TWO_TOWER
from research.bench.throughput import RateStep, Throughput, error_kinds_note, threads_name
from research.bench.wire_formats import JSON_WIRE
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
            return "MISS (not measured)"  # the detail says why
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


def row_of(
    rows: Sequence[LatencyRow], target: str, candidates: int, wire: str = JSON_WIRE
) -> LatencyRow | None:
    found = [
        r for r in rows if r.target == target and r.candidates == candidates and r.wire == wire
    ]
    return found[0] if found else None


def p50_of(
    rows: Sequence[LatencyRow], target: str, candidates: int, wire: str = JSON_WIRE
) -> float | None:
    found = row_of(rows, target, candidates, wire)
    return None if found is None else found.p50_ms


def round_ratios(
    rows: Sequence[LatencyRow], over: tuple[str, str], under: tuple[str, str], candidates: int
) -> str:
    """Each round's p50 of the (target, wire) `over` / that of `under`, as '; rounds 1.05, ...':
    how far the pooled ratio moves between rounds (their targets started anew); empty when a
    row has no rounds."""
    over_row, under_row = (
        row_of(rows, over[0], candidates, over[1]),
        row_of(rows, under[0], candidates, under[1]),
    )
    if over_row is None or under_row is None:
        return ""
    pairs = list(zip(over_row.round_p50_ms, under_row.round_p50_ms, strict=False))
    if not pairs:
        return ""
    return "; rounds " + ", ".join(f"{a / b:.2f}" for a, b in pairs)


def not_measured_at(candidates: int, wire: str) -> str:
    return f"{candidates:,} candidates over {wire} not in PRERANK_BENCH_CANDIDATES x WIRE_FORMATS"


def echo_floor_verdict(rows: Sequence[LatencyRow], settings: BenchSettings) -> Verdict:
    candidates, limit = settings.bench_echo_floor_candidates, settings.bench_echo_floor_goal
    goal = f"/prerank FIT p50 / echo floor p50 at {candidates:,} candidates, JSON"
    fit, echo = p50_of(rows, FIT, candidates), p50_of(rows, ECHO, candidates)
    if fit is None or echo is None:
        return Verdict(goal, None, limit, True, not_measured_at(candidates, JSON_WIRE))
    return Verdict(goal, fit / echo, limit, True, f"FIT {fit:.2f} ms, echo {echo:.2f} ms")


def two_tower_verdict(rows: Sequence[LatencyRow], settings: BenchSettings) -> Verdict:
    counts, limit = settings.bench_two_tower_candidates, settings.bench_two_tower_goal
    goal = f"FIT p50 / Two-Tower p50 at {' and '.join(f'{n:,}' for n in counts)} candidates"
    goal += ", JSON (the larger)"
    ratios = {}
    for candidates in counts:
        fit, two_tower = p50_of(rows, FIT, candidates), p50_of(rows, TWO_TOWER, candidates)
        if fit is None or two_tower is None:
            return Verdict(goal, None, limit, True, not_measured_at(candidates, JSON_WIRE))
        ratios[candidates] = (fit / two_tower, fit, two_tower)
    detail = ". ".join(
        f"{n:,}: {ratio:.3f} ({fit:.2f} / {tt:.2f} ms"
        f"{round_ratios(rows, (FIT, JSON_WIRE), (TWO_TOWER, JSON_WIRE), n)})"
        for n, (ratio, fit, tt) in ratios.items()
    )
    worst = max(ratio for ratio, _, _ in ratios.values())
    return Verdict(goal, worst, limit, True, f"{detail}. Paper {PAPER_TWO_TOWER_RATIO}")


def binary_floor_verdict(rows: Sequence[LatencyRow], settings: BenchSettings) -> Verdict:
    """FIT over the binary format against the floor over JSON: the whole model, sent and
    answered in the binary format, against what JSON alone cost."""
    candidates, limit = settings.bench_binary_floor_candidates, settings.bench_binary_floor_goal
    wire = settings.bench_binary_wire_format
    goal = f"FIT p50 over {wire} / JSON echo floor p50 at {candidates:,} candidates"
    fit, echo = p50_of(rows, FIT, candidates, wire), p50_of(rows, ECHO, candidates)
    if fit is None:
        return Verdict(goal, None, limit, True, not_measured_at(candidates, wire))
    if echo is None:
        return Verdict(goal, None, limit, True, not_measured_at(candidates, JSON_WIRE))
    detail = f"FIT over {wire} {fit:.2f} ms, echo over JSON {echo:.2f} ms"
    detail += round_ratios(rows, (FIT, wire), (ECHO, JSON_WIRE), candidates)
    binary_echo = p50_of(rows, ECHO, candidates, wire)
    if binary_echo is not None:
        detail += f" (echo over {wire} {binary_echo:.2f} ms)"
    return Verdict(goal, fit / echo, limit, True, detail)


def scorer_efficiency_verdict(
    efficiency: ScorerEfficiency | None, settings: BenchSettings
) -> Verdict:
    limit = settings.bench_scorer_efficiency_goal
    goal = (
        f"FIT's scorer at {settings.bench_scorer_candidates:,} candidates: achieved GFLOP/s / "
        "single-core GEMM GFLOP/s"
    )
    if efficiency is None:
        return Verdict(goal, None, limit, False, "no FIT bundle timed")
    e = efficiency
    detail = (
        f"{e.megaflops:.2f} MFLOP in {e.median_ms:.3f} ms = "
        f"{e.achieved_gflops:.2f} GFLOP/s; GEMM {e.gemm_size}^3 {e.gemm_gflops:.1f} GFLOP/s"
    )
    return Verdict(goal, e.share_of_gemm, limit, False, detail)


def throughput_of(
    throughputs: Sequence[Throughput], target: str, wire: str, request_threads: int | None = None
) -> Throughput | None:
    found = [
        t
        for t in throughputs
        if t.target == target and t.wire == wire and t.request_threads == request_threads
    ]
    return found[0] if found else None


def held_rate(throughput: Throughput, settings: BenchSettings) -> str:
    """The highest rate held (its p50, p99 and the generator's CPU) and where it broke."""
    if throughput.not_measured is not None:
        return f"not measured ({throughput.not_measured})"
    if not throughput.steps:
        return "no rate tried"
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
        else "every rate tried held: its limit lies higher"
    )
    return f"{held}, {broke}"


def rate_ratio(fit: Throughput | None, echo: Throughput | None) -> float | None:
    """FIT's highest rate held / the echo floor's; None when either was not measured or the
    floor held no rate."""
    if fit is None or echo is None or fit.not_measured or echo.not_measured:
        return None
    if echo.best is None:
        return None
    return (0.0 if fit.best is None else fit.best.rate) / echo.best.rate


def throughput_verdict(throughputs: Sequence[Throughput], settings: BenchSettings) -> Verdict:
    """FIT's highest rate held over the echo floor's, both with the same workers over JSON; the
    other formats' figures beside it."""
    workers, candidates = settings.bench_throughput_workers, settings.bench_throughput_candidates
    limit = settings.bench_throughput_ratio_goal
    goal = (
        f"{workers} workers, {candidates:,} candidates, JSON: highest rate FIT holds / highest the "
        f"echo floor holds (p99 <= {settings.bench_tail_ratio_limit:g} x p50, zero errors)"
    )
    judged, *_ = settings.bench_throughput_request_threads
    if judged is not None:
        goal += f", PRERANK_REQUEST_THREADS={judged}"
    parts = []
    for threads in settings.bench_throughput_request_threads:
        for wire in settings.bench_throughput_wire_formats:
            fit = throughput_of(throughputs, FIT, wire, threads)
            echo = throughput_of(throughputs, ECHO, wire, threads)
            ratio = rate_ratio(fit, echo)
            shown = "-" if ratio is None else f"{ratio:.2f}"
            figures = [
                f"{name} {held_rate(found, settings)}"
                for name, found in ((FIT, fit), (ECHO, echo))
                if found is not None
            ]
            if figures:
                parts.append(f"{threads_name(threads)}, {wire} {shown}: " + "; ".join(figures))
    detail = ". ".join(parts)  # no "|": the detail is a cell of the report's table
    value = rate_ratio(
        throughput_of(throughputs, FIT, JSON_WIRE, judged),
        throughput_of(throughputs, ECHO, JSON_WIRE, judged),
    )
    if value is None:
        return Verdict(goal, None, limit, False, f"no JSON rate of both held: {detail}")
    return Verdict(goal, value, limit, False, detail)


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
    efficiency: ScorerEfficiency | None,
    throughputs: Sequence[Throughput],
    settings: BenchSettings,
) -> list[Verdict]:
    """Every goal of one run, in the report's order."""
    return [
        two_tower_verdict(rows, settings),
        binary_floor_verdict(rows, settings),
        throughput_verdict(throughputs, settings),
        scorer_efficiency_verdict(efficiency, settings),
        echo_floor_verdict(rows, settings),
    ]
