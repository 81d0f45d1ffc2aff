"""The goals on given numbers (no speed goal is measured here: only `make bench` on a quiet
machine does): each ratio against its limit, in the wire format it is judged in, the larger
Two-Tower ratio deciding, the highest rate held before the first that broke."""

from __future__ import annotations

from dataclasses import replace

import pytest

from research.bench.latency_passes import LatencyRow
from research.bench.targets import ECHO, FIT, TWO_TOWER
from research.bench.throughput import Throughput
from research.bench.verdicts import (
    binary_floor_verdict,
    echo_floor_verdict,
    scorer_efficiency_verdict,
    throughput_verdict,
    two_tower_verdict,
    verdicts_of,
)
from tests.research.bench.builders import GOALS, efficiency, row, step, throughput

MSGPACK = "msgpack"


def test_latency_verdicts_are_judged_in_their_formats() -> None:
    rows = [
        row(ECHO, 5_000, 2.0),
        row(FIT, 1_000, 1.05),
        row(TWO_TOWER, 1_000, 1.0),
        row(FIT, 5_000, 4.0),
        row(TWO_TOWER, 5_000, 3.5),
        row(FIT, 5_000, 1.9, MSGPACK),
        row(TWO_TOWER, 5_000, 1.9, MSGPACK),  # a msgpack ratio of 1.0: not the one judged
        row(ECHO, 5_000, 0.5, MSGPACK),
    ]
    assert echo_floor_verdict(rows, GOALS).status == "PASS"  # 4.0 / 2.0 = 2.0
    assert echo_floor_verdict([*rows[1:], row(ECHO, 5_000, 1.0)], GOALS).status == "MISS"  # 4.0
    two_tower = two_tower_verdict(rows, GOALS)  # 1.05 and 1.14 over JSON: the larger decides
    assert two_tower.value == pytest.approx(4.0 / 3.5) and two_tower.status == "MISS"
    unmeasured = two_tower_verdict(rows[:3], GOALS)
    assert unmeasured.status == "MISS (not measured)" and unmeasured.detail.startswith("5,000")

    binary = binary_floor_verdict(rows, GOALS)  # FIT over msgpack against the JSON floor
    assert binary.value == pytest.approx(1.9 / 2.0) and binary.status == "PASS"
    assert "echo over msgpack 0.50 ms" in binary.detail
    slower = [*rows[:5], row(FIT, 5_000, 2.1, MSGPACK)]
    assert binary_floor_verdict(slower, GOALS).status == "MISS"
    assert binary_floor_verdict(rows[:5], GOALS).status == "MISS (not measured)"


def test_throughput_verdict_is_fit_over_the_floor_with_the_same_workers() -> None:
    echo = throughput(ECHO, [step(500, 1.0, 2.0), step(1_000, 1.0, 3.0), step(1_200, 1.0, 9.0)])
    fit_held = throughput(FIT, [step(500, 2.0, 4.0), step(800, 2.0, 7.9), step(1_000, 2.0, 9.0)])
    fit_msgpack = throughput(FIT, [step(500, 2.0, 4.0), step(1_000, 2.0, 4.0)], MSGPACK)
    verdict = throughput_verdict([echo, fit_held, fit_msgpack], GOALS)
    assert verdict.value == pytest.approx(0.8) and verdict.status == "PASS"  # 800 / 1,000
    assert "broke at 1200/s (p99 9.0 ms > 4 x p50 1.0)" in verdict.detail
    assert "msgpack -: fit held 1000/s" in verdict.detail  # beside it, no floor to divide by

    fit_broke = throughput(FIT, [step(500, 2.0, 4.0), step(800, 2.0, 8.1)])
    assert throughput_verdict([echo, fit_broke], GOALS).value == pytest.approx(0.5)
    assert throughput_verdict([echo, fit_broke], GOALS).status == "MISS"
    fit_failing = throughput(FIT, [step(400, 2.0, 3.0, errors=1)])
    assert throughput_verdict([echo, fit_failing], GOALS).value == 0
    echo_broke_first = throughput(ECHO, [step(100, 1.0, 5.0)])
    no_floor = throughput_verdict([echo_broke_first, fit_held], GOALS)
    assert no_floor.status == "MISS (not measured)"
    assert no_floor.detail.startswith("no JSON rate of both held")
    missing = Throughput(FIT, "json", 2, 0, 1_000, not_measured="no PRERANK_WORKERS")
    assert "no PRERANK_WORKERS" in throughput_verdict([echo, missing], GOALS).detail

    curve = [step(100, 1.0, 2.0), step(200, 1.0, 5.0), step(300, 1.0, 2.0)]  # 200 broke
    past_a_break = throughput(ECHO, curve)
    assert past_a_break.best is not None and past_a_break.best.rate == 100


def test_scorer_efficiency_verdict() -> None:
    # 5,000 candidates x 704 multiply-adds x 2 = 7.04 MFLOP; in 1 ms, 7.04 GFLOP/s
    assert efficiency(1.0, 20.0).achieved_gflops == pytest.approx(7.04)
    passing = scorer_efficiency_verdict(efficiency(1.0, 20.0), GOALS)
    assert passing.value == pytest.approx(7.04 / 20.0) and passing.status == "PASS"
    assert scorer_efficiency_verdict(efficiency(1.0, 40.0), GOALS).status == "MISS"  # 18%
    assert scorer_efficiency_verdict(None, GOALS).status == "MISS (not measured)"


def test_every_goal_has_a_verdict_and_the_naive_path_none() -> None:
    rows = [row(t, n, 1.0) for t in (ECHO, FIT, TWO_TOWER) for n in (1_000, 5_000)]
    rows.append(row(FIT, 5_000, 1.0, MSGPACK))
    echo = throughput(ECHO, [step(500, 1.0, 2.0)])
    verdicts = verdicts_of(rows, efficiency(1.0, 20.0), [echo, throughput(FIT, [])], GOALS)
    assert len(verdicts) == 5
    assert not any("per pair" in v.goal for v in verdicts)  # information, not a goal


def test_the_goals_are_settings() -> None:
    """A goal moved in the settings moves the verdict: the limits live nowhere else."""
    rows = [row(ECHO, 5_000, 2.0), row(FIT, 5_000, 4.0)]  # a ratio of 2.0
    stricter = GOALS.model_copy(update={"bench_echo_floor_goal": 1.5})
    assert echo_floor_verdict(rows, GOALS).status == "PASS"
    assert echo_floor_verdict(rows, stricter).status == "MISS"
    elsewhere = GOALS.model_copy(update={"bench_echo_floor_candidates": 1_000})
    assert echo_floor_verdict(rows, elsewhere).detail.startswith("1,000 candidates")
    lenient = GOALS.model_copy(update={"bench_scorer_efficiency_goal": 0.1})
    assert scorer_efficiency_verdict(efficiency(1.0, 40.0), lenient).status == "PASS"
    echo = throughput(ECHO, [step(1_000, 1.0, 2.0)])
    fit = throughput(FIT, [step(600, 1.0, 2.0)])
    assert throughput_verdict([echo, fit], GOALS).status == "MISS"  # 0.6 < 0.7
    laxer = GOALS.model_copy(update={"bench_throughput_ratio_goal": 0.5})
    assert throughput_verdict([echo, fit], laxer).status == "PASS"


def test_throughput_verdict_judges_the_default_threads_and_shows_the_others() -> None:
    def on_the_loop(found: Throughput) -> Throughput:
        return replace(found, request_threads=0)

    echo = throughput(ECHO, [step(500, 1.0, 2.0), step(1_000, 1.0, 9.0)])
    fit = throughput(FIT, [step(200, 2.0, 4.0), step(500, 2.0, 9.0)])
    fit_on_the_loop = on_the_loop(throughput(FIT, [step(500, 2.0, 4.0), step(800, 2.0, 9.0)]))
    both = [echo, fit, on_the_loop(echo), fit_on_the_loop]
    assert GOALS.bench_throughput_request_threads == (None, 0)
    verdict = throughput_verdict(both, GOALS)
    assert verdict.value == pytest.approx(0.4)  # 200 / 500 with the default threads
    assert "default threads, json 0.40: fit held 200/s" in verdict.detail
    assert "PRERANK_REQUEST_THREADS=0, json 1.00: fit held 500/s" in verdict.detail
    judged_on_the_loop = GOALS.model_copy(update={"bench_throughput_request_threads": (0,)})
    verdict = throughput_verdict(both, judged_on_the_loop)
    assert verdict.value == pytest.approx(1.0) and verdict.goal.endswith("THREADS=0")


def test_latency_verdicts_show_each_rounds_ratio() -> None:
    def rounds(found: LatencyRow, *p50s: float) -> LatencyRow:
        return replace(found, round_p50_ms=p50s)

    rows = [
        rounds(row(FIT, 1_000, 2.2), 2.2, 2.0, 2.4),
        rounds(row(TWO_TOWER, 1_000, 2.0), 2.0, 2.0, 2.0),
        rounds(row(FIT, 5_000, 5.0), 5.0, 6.0),  # a round short: ratios of the rounds both have
        rounds(row(TWO_TOWER, 5_000, 5.0), 4.0, 5.0, 6.0),
        rounds(row(ECHO, 5_000, 4.0), 4.0, 4.0),
        rounds(row(FIT, 5_000, 3.0, MSGPACK), 3.0, 5.0),
    ]
    detail = two_tower_verdict(rows, GOALS).detail
    assert "1,000: 1.100 (2.20 / 2.00 ms; rounds 1.10, 1.00, 1.20)" in detail
    assert "5,000: 1.000 (5.00 / 5.00 ms; rounds 1.25, 1.20)" in detail
    assert "rounds 0.75, 1.25" in binary_floor_verdict(rows, GOALS).detail
    pooled_only = [row(target, n, 2.0) for target in (FIT, TWO_TOWER) for n in (1_000, 5_000)]
    assert two_tower_verdict(pooled_only, GOALS).value == 1.0
    assert "rounds" not in two_tower_verdict(pooled_only, GOALS).detail
