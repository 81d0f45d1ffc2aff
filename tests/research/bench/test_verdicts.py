"""The goals on given numbers (no speed goal is measured here: only `make bench` on a quiet
machine does): each ratio against its limit, the larger Two-Tower ratio deciding, the highest
rate held before the first that broke."""

from __future__ import annotations

import pytest

from research.bench.targets import ECHO, FIT, TWO_TOWER
from research.bench.throughput import Throughput
from research.bench.verdicts import (
    echo_floor_verdict,
    scoring_verdict,
    throughput_verdict,
    two_tower_verdict,
)
from tests.research.bench.builders import GOALS, row, scoring, step


def test_verdicts_on_given_numbers() -> None:
    rows = [
        row(ECHO, 5_000, 2.0),
        row(FIT, 1_000, 1.05),
        row(TWO_TOWER, 1_000, 1.0),
        row(FIT, 5_000, 4.0),
        row(TWO_TOWER, 5_000, 3.5),
    ]
    assert echo_floor_verdict(rows, GOALS).status == "PASS"  # 4.0 / 2.0 = 2.0
    assert echo_floor_verdict([*rows[1:], row(ECHO, 5_000, 1.0)], GOALS).status == "MISS"  # 4.0
    two_tower = two_tower_verdict(rows, GOALS)  # 1.05 and 1.14: the larger decides
    assert two_tower.value == pytest.approx(4.0 / 3.5) and two_tower.status == "MISS"
    assert two_tower_verdict(rows[:3], GOALS).status.startswith("MISS (not measured: 5,000")
    assert scoring_verdict(scoring(1.0, 60.0), GOALS).status == "PASS"
    assert scoring_verdict(scoring(2.0, 60.0), GOALS).status == "MISS"

    held = Throughput(FIT, 2, 3, 1_000, [step(200, 2.0, 4.0), step(300, 2.0, 7.9)])
    assert throughput_verdict(held, GOALS).status == "PASS"
    broke = Throughput(FIT, 2, 3, 1_000, [step(200, 2.0, 4.0), step(300, 2.0, 8.1)])
    assert throughput_verdict(broke, GOALS).value == 200
    assert throughput_verdict(broke, GOALS).status == "MISS"
    failing = Throughput(FIT, 2, 3, 1_000, [step(400, 2.0, 3.0, errors=1)])
    assert throughput_verdict(failing, GOALS).value == 0
    curve = [step(100, 1.0, 2.0), step(200, 1.0, 5.0), step(300, 1.0, 2.0)]  # 200 broke
    past_a_break = Throughput(ECHO, 1, 1, 1_000, curve)
    assert past_a_break.best is not None and past_a_break.best.rate == 100
    missing = Throughput(FIT, 2, 0, 1_000, not_measured="no PRERANK_WORKERS")
    assert throughput_verdict(missing, GOALS).status == "MISS (not measured: no PRERANK_WORKERS)"


def test_the_goals_are_settings() -> None:
    """A goal moved in the settings moves the verdict: the limits live nowhere else."""
    rows = [row(ECHO, 5_000, 2.0), row(FIT, 5_000, 4.0)]  # a ratio of 2.0
    stricter = GOALS.model_copy(update={"bench_echo_floor_goal": 1.5})
    assert echo_floor_verdict(rows, GOALS).status == "PASS"
    assert echo_floor_verdict(rows, stricter).status == "MISS"
    elsewhere = GOALS.model_copy(update={"bench_echo_floor_candidates": 1_000})
    assert echo_floor_verdict(rows, elsewhere).status.startswith("MISS (not measured: 1,000")
