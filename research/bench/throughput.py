"""Open-loop throughput: FIT and the echo floor, each with the same worker processes, under
requests at fixed rates in each wire format, stepped up until one breaks (an error, p99 past the
tail limit, or answers falling behind the rate)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from prerank_contract.settings import ENV_PREFIX
from research.bench.cpu import CpuMeter
from research.bench.latency_passes import HEADLINE_PERCENTILES
from research.bench.request_sets import request_set
from research.bench.targets import ECHO, ECHO_MODULE, FIT, max_candidates, service_env
from research.bench.wire_formats import WIRE_FORMATS, WireFormat
from research.http_client import OpenLoopRun, open_loop
from research.service_process import SERVICE_MODULE, ServiceProcess
from research.settings import BenchSettings

log = logging.getLogger("research.bench.throughput")


@dataclass(frozen=True)
class RateStep:
    """One open-loop rate and whether the server held it."""

    rate: float
    sent: int
    offered_rate: float
    completed_rate: float
    errors: int
    error_kinds: dict[str, int]  # status code or exception name -> count
    p50_ms: float
    p99_ms: float
    send_lag_p99_ms: float
    generator_cpu_percent: float  # this process, of one core
    server_cpu_percent: float  # every server process, of one core
    other_cpu_percent: float  # every other process of the machine, of one core
    held: bool
    rerun: bool = False  # a second run of the step before's rate, which broke


@dataclass(frozen=True)
class Throughput:
    """The open-loop step-up against one server in one wire format."""

    target: str
    wire: str  # the wire format's name (`WIRE_FORMATS`)
    workers: int
    processes: int  # server processes seen (a supervisor and its workers)
    candidates: int
    steps: list[RateStep] = field(default_factory=list)
    not_measured: str | None = None  # why there are no steps
    request_threads: int | None = None  # PRERANK_REQUEST_THREADS (None: the service's default)

    @property
    def best(self) -> RateStep | None:
        """The highest rate held before the first that did not, its reruns included (rates
        increase)."""
        best = None
        for index, step in enumerate(self.steps):
            if step.held:
                best = step
                continue
            rerun_next = index + 1 < len(self.steps) and self.steps[index + 1].rerun
            if not rerun_next:
                break
        return best


def threads_name(request_threads: int | None) -> str:
    """How a report names a PRERANK_REQUEST_THREADS of the open loop."""
    if request_threads is None:
        return "default threads"
    return f"PRERANK_REQUEST_THREADS={request_threads}"


def rate_holds(
    p50_ms: float,
    p99_ms: float,
    errors: int,
    completed: float,
    rate: float,
    settings: BenchSettings,
) -> bool:
    """Zero errors, p99 within `bench_tail_ratio_limit` x p50, and answers keeping pace with the
    rate (`bench_throughput_keep_up` of it)."""
    return (
        errors == 0
        and p99_ms <= settings.bench_tail_ratio_limit * p50_ms
        and completed >= settings.bench_throughput_keep_up * rate
    )


def error_kinds_note(kinds: Mapping[str, int]) -> str:
    """ " (503: 2, TimeoutError: 1)", or nothing without errors."""
    return f" ({', '.join(f'{kind}: {count}' for kind, count in kinds.items())})" if kinds else ""


def rate_step(run: OpenLoopRun, meter: CpuMeter, settings: BenchSettings) -> RateStep:
    """What one open-loop run at one rate measured, judged."""
    cpu = meter.stop()
    p50, p99 = (float(v) for v in np.percentile(run.latencies_ms, HEADLINE_PERCENTILES))
    return RateStep(
        rate=run.rate,
        sent=run.sent,
        offered_rate=run.offered_rate,
        completed_rate=run.completed_rate,
        errors=run.errors,
        error_kinds=run.error_kinds,
        p50_ms=p50,
        p99_ms=p99,
        send_lag_p99_ms=float(np.percentile(run.send_lag_ms, HEADLINE_PERCENTILES[-1])),
        generator_cpu_percent=cpu.percent(cpu.client),
        server_cpu_percent=cpu.percent(cpu.server),
        other_cpu_percent=cpu.percent(cpu.other),
        held=rate_holds(p50, p99, run.errors, run.completed_rate, run.rate, settings),
    )


RateMeasure = Callable[[str, float], RateStep]
"""(target, rate) -> one open-loop run of that target at that rate, judged."""


def step_up_in_turn(
    targets: Sequence[str],
    rates: Sequence[float],
    measure: RateMeasure,
    label: str,
    progress: bool,
    reruns: int = 0,
) -> dict[str, list[RateStep]]:
    """Each target at each rate, increasing, the targets in turn at every rate (their order
    reversed from one rate to the next), so a slow spell of the machine falls on each alike
    rather than on one target's whole step-up; a rate that breaks is run up to `reruns` times
    more (each run a step of its own), and a target stops at its first rate that breaks in every
    run, the others go on. target -> its steps."""
    steps: dict[str, list[RateStep]] = {target: [] for target in targets}
    stepping = list(targets)
    for index, rate in enumerate(
        tqdm(sorted(rates), desc=f"open loop {label}", disable=not progress)
    ):
        for target in list(stepping if index % 2 == 0 else reversed(stepping)):
            step = measure(target, rate)
            steps[target].append(step)
            log.info("open loop %s %s: %s", target, label, step)
            for _ in range(reruns):
                if step.held:
                    break
                step = replace(measure(target, rate), rerun=True)
                steps[target].append(step)
                log.info("open loop %s %s, run again: %s", target, label, step)
            if not step.held:
                stepping.remove(target)
        if not stepping:
            break
    return steps


def open_loop_measure(
    services: Mapping[str, ServiceProcess],
    bodies: Sequence[bytes],
    wire: WireFormat,
    settings: BenchSettings,
) -> RateMeasure:
    """`bodies` (in `wire`'s encoding, the answers asked for in it) at one rate for
    `bench_throughput_seconds` against one of `services`, its CPU metered; each service first
    gets `bench_throughput_warmup_seconds` at the lowest rate."""

    def run_at(target: str, rate: float, seconds: float) -> OpenLoopRun:
        return open_loop(
            f"{services[target].url}/prerank",
            bodies,
            rate,
            seconds,
            timeout=settings.bench_throughput_request_timeout_seconds,
            connections=settings.bench_throughput_connections,
            headers=wire.headers,
            content_type=wire.content_type,
        )

    if settings.bench_throughput_warmup_seconds:
        for target in services:
            run_at(
                target,
                min(settings.bench_throughput_rates),
                settings.bench_throughput_warmup_seconds,
            )

    def measure(target: str, rate: float) -> RateStep:
        meter = CpuMeter(services[target].processes())
        return rate_step(run_at(target, rate, settings.bench_throughput_seconds), meter, settings)

    return measure


def throughput_bodies(
    catalogue: np.ndarray, users: int, wire: WireFormat, settings: BenchSettings
) -> list[bytes]:
    """The bodies every open loop cycles through, drawn with the benchmark's seed (the same
    requests in every format)."""
    rng = np.random.default_rng(settings.bench_seed)
    return request_set(
        catalogue,
        settings.bench_throughput_candidates,
        settings.bench_throughput_bodies,
        settings.bench_history,
        users,
        rng,
    ).encoded(wire)


def start_servers(
    stack: ExitStack, fit_bundle: Path, settings: BenchSettings, request_threads: int | None
) -> tuple[dict[str, ServiceProcess], dict[str, str]]:
    """The echo floor and the FIT service on `fit_bundle`, each with PRERANK_WORKERS =
    `bench_throughput_workers` and PRERANK_REQUEST_THREADS = `request_threads` (None: unset),
    stopped when `stack` closes: (target -> server started, target -> why it did not start)."""
    workers = settings.bench_throughput_workers
    env = service_env(settings) | {f"{ENV_PREFIX}WORKERS": str(workers)}
    if request_threads is not None:
        env[f"{ENV_PREFIX}REQUEST_THREADS"] = str(request_threads)
    started, failed = {}, {}
    for target, module in ((ECHO, ECHO_MODULE), (FIT, SERVICE_MODULE)):
        log_path = settings.bench_log_dir / f"{target}-{workers}-workers.log"
        server = ServiceProcess.from_bundle_dir(
            fit_bundle, log_path, max_candidates(settings), env_overrides=env, module=module
        )
        try:
            started[target] = stack.enter_context(server)
        except (RuntimeError, TimeoutError) as exc:
            failed[target] = f"{target} with PRERANK_WORKERS={workers} did not start: {exc}"
    return started, failed


def measure_throughput(
    fit_bundle: Path, catalogue: np.ndarray, users: int, settings: BenchSettings
) -> list[Throughput]:
    """Per entry of `bench_throughput_request_threads`: the echo floor and the FIT service, both
    with the same worker processes and threads and both running all along, under the open-loop
    step-up in each of `bench_throughput_wire_formats`, floor and FIT in turn at every rate
    (`step_up_in_turn`); a server that does not start is not measured (with the reason)."""
    return [
        result
        for request_threads in settings.bench_throughput_request_threads
        for result in measure_configuration(fit_bundle, catalogue, users, settings, request_threads)
    ]


def measure_configuration(
    fit_bundle: Path,
    catalogue: np.ndarray,
    users: int,
    settings: BenchSettings,
    request_threads: int | None,
) -> list[Throughput]:
    """`measure_throughput` of one PRERANK_REQUEST_THREADS (None: the service's default)."""
    workers = settings.bench_throughput_workers
    candidates = settings.bench_throughput_candidates
    results = []
    with ExitStack() as stack:
        started, failed = start_servers(stack, fit_bundle, settings, request_threads)
        for wire_name in settings.bench_throughput_wire_formats:
            wire = WIRE_FORMATS[wire_name]
            bodies = throughput_bodies(catalogue, users, wire, settings)
            threads = "" if request_threads is None else f" threads={request_threads}"
            steps = step_up_in_turn(
                list(started),
                settings.bench_throughput_rates,
                open_loop_measure(started, bodies, wire, settings),
                f"x{workers}{threads} {wire_name}",
                settings.bench_progress,
                settings.bench_throughput_reruns,
            )
            for target in (ECHO, FIT):
                measured = Throughput(
                    target, wire_name, workers, 0, candidates, request_threads=request_threads
                )
                if target in failed:
                    results.append(replace(measured, not_measured=failed[target]))
                    continue
                processes = len(started[target].processes())
                results.append(replace(measured, processes=processes, steps=steps[target]))
    return results
