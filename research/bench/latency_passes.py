"""Closed-loop latency: every target at every candidate count, in rounds that rotate the order of
the targets, with the CPU each side used over the timed requests."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from research.bench.cpu import PERCENT, CpuMeter, CpuUse
from research.bench.request_sets import RequestSet, request_set
from research.http_client import PERCENTILES, closed_loop
from research.service_process import ServiceProcess
from research.settings import BenchSettings

log = logging.getLogger("research.bench.latency_passes")

HEADLINE_PERCENTILES = (50, 99)


@dataclass(frozen=True)
class Pass:
    """One closed-loop pass of timed requests against one target."""

    latencies_ms: np.ndarray  # [requests]
    wall_seconds: float  # the timed requests, end to end
    cpu: CpuUse  # over the timed requests
    errors: int
    deadline_fallbacks: int  # answers degraded for "deadline": not the full model's


def measure_pass(
    service: ServiceProcess, bodies: Sequence[bytes], warmup: int, timeout: float
) -> Pass:
    """`warmup` untimed requests, then the rest timed on one connection, with the CPU used by
    this (client) process and the server's processes over the timed requests."""
    url = f"{service.url}/prerank"
    warm = closed_loop(url, bodies[:warmup], timeout=timeout)
    meter = CpuMeter(service.processes())
    timed = closed_loop(url, bodies[warmup:], timeout=timeout)
    return Pass(
        latencies_ms=timed.latencies_ms,
        wall_seconds=timed.wall_seconds,
        cpu=meter.stop(),
        errors=warm.errors + timed.errors,
        deadline_fallbacks=warm.degraded_reasons.get("deadline", 0)
        + timed.degraded_reasons.get("deadline", 0),
    )


@dataclass(frozen=True)
class LatencyRow:
    """One target at one candidate count, over every round."""

    target: str
    candidates: int  # ids per request
    known: int  # of them in the catalogue
    requests: int  # timed
    errors: int
    deadline_fallbacks: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests_per_second: float
    client_cpu_percent: float  # of one core
    server_cpu_percent: float  # of one core, all server processes
    other_cpu_percent: float  # of one core, every other process of the machine


def summarise(target: str, requests: RequestSet, passes: Sequence[Pass]) -> LatencyRow:
    """Every round's passes of one target at one candidate count, as one row."""
    latencies = np.concatenate([p.latencies_ms for p in passes])
    p50, p95, p99 = (float(v) for v in np.percentile(latencies, PERCENTILES))
    window = sum(p.cpu.window_seconds for p in passes)
    return LatencyRow(
        target=target,
        candidates=requests.candidates,
        known=requests.known,
        requests=int(latencies.size),
        errors=sum(p.errors for p in passes),
        deadline_fallbacks=sum(p.deadline_fallbacks for p in passes),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        requests_per_second=latencies.size / sum(p.wall_seconds for p in passes),
        client_cpu_percent=PERCENT * sum(p.cpu.client for p in passes) / window,
        server_cpu_percent=PERCENT * sum(p.cpu.server for p in passes) / window,
        other_cpu_percent=PERCENT * sum(p.cpu.other for p in passes) / window,
    )


def rotated(targets: Sequence[str], shift: int) -> list[str]:
    """The targets starting at `shift`: turns of one round, and rounds of one candidate count,
    start at different targets."""
    shift %= len(targets)
    return [*targets[shift:], *targets[:shift]]


def measure_latency(
    services: Mapping[str, ServiceProcess],
    catalogue: np.ndarray,
    users: int,
    settings: BenchSettings,
) -> list[LatencyRow]:
    """Closed-loop latency of every target at every candidate count. Per round and count, every
    target gets the same bodies, back to back, in an order that rotates between turns."""
    rng = np.random.default_rng(settings.bench_seed)
    targets = list(services)
    passes: dict[tuple[str, int], list[Pass]] = defaultdict(list)
    sets: dict[int, RequestSet] = {}
    per_target = settings.bench_warmup + settings.bench_requests
    counts = settings.bench_candidates
    turns = settings.bench_rounds * len(counts)
    with tqdm(
        total=turns * len(targets), desc="closed loop", disable=not settings.bench_progress
    ) as bar:
        for turn in range(turns):
            round_index, wanted = divmod(turn, len(counts))
            candidates = counts[wanted]
            sets[candidates] = request_set(
                catalogue, candidates, per_target, settings.bench_history, users, rng
            )
            for target in rotated(targets, round_index + wanted):
                bar.set_postfix_str(f"round {round_index + 1} N={candidates} {target}")
                result = measure_pass(
                    services[target],
                    sets[candidates].bodies,
                    settings.bench_warmup,
                    settings.bench_request_timeout_seconds,
                )
                passes[target, candidates].append(result)
                log.info(
                    "round %d, %d candidates, %s: p50 %.2f ms, p99 %.2f ms",
                    round_index + 1,
                    candidates,
                    target,
                    *np.percentile(result.latencies_ms, HEADLINE_PERCENTILES),
                )
                bar.update()
    return [
        summarise(target, sets[candidates], passes[target, candidates])
        for target in targets
        for candidates in counts
    ]
