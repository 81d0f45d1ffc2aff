"""The open-loop step-up: the echo floor and the FIT service, each with several workers, are
started (once per thread setting) and stepped up in increasing rates in each wire format, and a
rate holds only without errors, within the tail limit and keeping pace."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from research.bench.targets import ECHO, FIT
from research.bench.throughput import (
    RateStep,
    Throughput,
    measure_throughput,
    rate_holds,
    step_up_in_turn,
)
from research.settings import BenchSettings
from tests.conftest import Bundle
from tests.research.bench.builders import GOALS


def test_throughput_steps_up_the_floor_and_fit_with_the_same_workers(
    fit_bundle: Bundle, catalogue: np.ndarray, tmp_path: Path
) -> None:
    settings = BenchSettings(
        bench_throughput_rates=(40.0, 20.0),
        bench_throughput_seconds=1.0,
        bench_throughput_warmup_seconds=0.5,
        bench_throughput_candidates=50,
        bench_throughput_bodies=10,
        bench_throughput_wire_formats=("json", "msgpack"),
        bench_throughput_request_threads=(None, 0),
        bench_candidates=(50,),
        bench_log_dir=tmp_path,
        bench_progress=False,
    )
    throughputs = measure_throughput(fit_bundle.path, catalogue, 100, settings)
    assert [(t.request_threads, t.wire, t.target) for t in throughputs] == [
        (threads, wire, target)
        for threads in (None, 0)
        for wire in ("json", "msgpack")
        for target in (ECHO, FIT)
    ]
    for throughput in throughputs:
        assert throughput.not_measured is None
        # a parent and its workers, the floor as the service
        assert throughput.processes == settings.bench_throughput_workers + 1
        assert [s.rate for s in throughput.steps][:1] == [20.0]  # increasing order
        assert all(s.errors == 0 and s.sent > 0 for s in throughput.steps)
        assert all(s.server_cpu_percent > 0 for s in throughput.steps)


def test_rate_holds_only_when_answers_keep_pace() -> None:
    assert GOALS.bench_tail_ratio_limit == 4.0 and GOALS.bench_throughput_keep_up == 0.95
    assert rate_holds(2.0, 8.0, 0, 100.0, 100.0, GOALS)
    assert not rate_holds(2.0, 8.1, 0, 100.0, 100.0, GOALS)  # tail
    assert not rate_holds(2.0, 3.0, 1, 100.0, 100.0, GOALS)  # an error
    assert not rate_holds(2.0, 3.0, 0, 90.0, 100.0, GOALS)  # falling behind


def judged(rate: float, held: bool) -> RateStep:
    return RateStep(rate, 10, rate, rate, 0, {}, 1.0, 2.0, 0.1, 5.0, 50.0, 0.0, held)


def test_targets_step_up_in_turn_each_until_its_first_broken_rate() -> None:
    """The floor and FIT alternate at every rate, their order reversed from one rate to the
    next; each stops at its own first broken rate, the other goes on."""
    breaks_at = {ECHO: 400.0, FIT: 200.0}
    calls: list[tuple[str, float]] = []

    def measure(target: str, rate: float) -> RateStep:
        calls.append((target, rate))
        return judged(rate, rate < breaks_at[target])

    steps = step_up_in_turn([ECHO, FIT], (300.0, 100.0, 200.0, 400.0, 500.0), measure, "", False)
    assert calls == [
        (ECHO, 100.0),
        (FIT, 100.0),
        (FIT, 200.0),  # reversed at the second rate
        (ECHO, 200.0),
        (ECHO, 300.0),  # FIT broke at 200: the floor goes on alone
        (ECHO, 400.0),
    ]
    assert [s.rate for s in steps[FIT]] == [100.0, 200.0]
    assert [s.held for s in steps[ECHO]] == [True, True, True, False]


def test_a_broken_rate_is_run_again_before_it_ends_the_step_up() -> None:
    """One broken run at 200/s is run again and holds: FIT goes on to 300/s, where both runs
    break; `best` looks past the rerun rate."""
    outcomes = {(FIT, 200.0): [False, True], (FIT, 300.0): [False, False]}
    calls: list[tuple[str, float]] = []

    def measure(target: str, rate: float) -> RateStep:
        calls.append((target, rate))
        return judged(rate, outcomes.get((target, rate), [True]).pop(0))

    steps = step_up_in_turn([FIT], (100.0, 200.0, 300.0, 400.0), measure, "", False, reruns=1)
    assert calls == [(FIT, 100.0), (FIT, 200.0), (FIT, 200.0), (FIT, 300.0), (FIT, 300.0)]
    assert [(s.rate, s.held, s.rerun) for s in steps[FIT]] == [
        (100.0, True, False),
        (200.0, False, False),
        (200.0, True, True),
        (300.0, False, False),
        (300.0, False, True),
    ]
    throughput = Throughput(FIT, "json", 2, 3, 1_000, steps=steps[FIT])
    assert throughput.best is not None and throughput.best.rate == 200.0
