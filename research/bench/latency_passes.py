"""Closed-loop latency: every target in every wire format at every candidate count, in rounds
that rotate the order of the (target, format) turns, with the CPU each side used over the timed
requests."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from research.bench.cpu import PERCENT, CpuMeter, CpuUse
from research.bench.request_sets import RequestSet, request_set
from research.bench.wire_formats import WIRE_FORMATS, WireFormat
from research.http_client import PERCENTILES, ClosedLoopRun, closed_loop
from research.service_process import ServiceProcess
from research.settings import BenchSettings

log = logging.getLogger("research.bench.latency_passes")

HEADLINE_PERCENTILES = (50, 99)

Turn = TypeVar("Turn")


@dataclass(frozen=True)
class Pass:
    """One closed-loop pass of timed requests against one target."""

    latencies_ms: np.ndarray  # [requests]
    wall_seconds: float  # the timed requests, end to end
    cpu: CpuUse  # over the timed requests
    errors: int
    deadline_fallbacks: int  # answers degraded for "deadline": not the full model's


def measure_pass(
    service: ServiceProcess,
    bodies: Sequence[bytes],
    warmup: int,
    timeout: float,
    wire: WireFormat = WIRE_FORMATS["json"],
) -> Pass:
    """`warmup` untimed requests, then the rest timed on one connection, with the CPU used by
    this (client) process and the server's processes over the timed requests. `bodies` are in
    `wire`'s encoding; the answers are asked for and read in it."""
    url = f"{service.url}/prerank"

    def run(part: Sequence[bytes]) -> ClosedLoopRun:
        return closed_loop(
            url,
            part,
            wire.headers,
            timeout,
            content_type=wire.content_type,
            decode=wire.decode,
        )

    warm = run(bodies[:warmup])
    meter = CpuMeter(service.processes())
    timed = run(bodies[warmup:])
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
    """One target in one wire format at one candidate count, over every round."""

    target: str
    wire: str  # the wire format's name (`WIRE_FORMATS`)
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
    round_p50_ms: tuple[float, ...] = ()  # each round's own p50 (its targets started anew)


def summarise(
    target: str, wire: str, requests: RequestSet, rounds: Sequence[Sequence[Pass]]
) -> LatencyRow:
    """Every round's passes (each round a list of slices) of one target in one format at one
    candidate count, as one row: pooled, with each round's own p50 beside."""
    passes = [p for slices in rounds for p in slices]
    latencies = np.concatenate([p.latencies_ms for p in passes])
    p50, p95, p99 = (float(v) for v in np.percentile(latencies, PERCENTILES))
    window = sum(p.cpu.window_seconds for p in passes)
    return LatencyRow(
        target=target,
        wire=wire,
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
        round_p50_ms=tuple(round_p50(slices) for slices in rounds),
    )


def round_p50(slices: Sequence[Pass]) -> float:
    return float(np.percentile(np.concatenate([p.latencies_ms for p in slices]), 50))


def rotated(turns: Sequence[Turn], shift: int) -> list[Turn]:
    """The turns starting at `shift`: turns of one round, and rounds of one candidate count,
    start at different turns."""
    shift %= len(turns)
    return [*turns[shift:], *turns[:shift]]


def measure_latency(
    start_targets: Callable[[], AbstractContextManager[Mapping[str, ServiceProcess]]],
    catalogue: np.ndarray,
    users: int,
    settings: BenchSettings,
) -> list[LatencyRow]:
    """Closed-loop latency of every target in every format of `bench_wire_formats` at every
    candidate count. Each round starts the targets anew (`start_targets`): a process's speed on a
    shared VM varies from one start to the next. Per round and count, every (target, format)
    turn gets the same requests: each its warm-up, then the timed ones in slices of
    `bench_slice_requests`, the turns taking their slices in rotation, so a slow spell of the
    machine (they last from a fraction of a second to minutes here) falls on every target
    alike."""
    rng = np.random.default_rng(settings.bench_seed)
    rounds: dict[tuple[str, str, int], list[list[Pass]]] = defaultdict(list)
    sets: dict[int, RequestSet] = {}
    counts = settings.bench_candidates
    targets: list[str] = []
    with tqdm(
        total=settings.bench_rounds * len(counts),
        desc="closed loop",
        disable=not settings.bench_progress,
    ) as bar:
        for round_index in range(settings.bench_rounds):
            with start_targets() as services:
                targets = list(services)
                for wanted, candidates in enumerate(counts):
                    bar.set_postfix_str(f"round {round_index + 1} N={candidates}")
                    sets[candidates] = request_set(
                        catalogue,
                        candidates,
                        settings.bench_warmup + settings.bench_requests,
                        settings.bench_history,
                        users,
                        rng,
                    )
                    measured = measure_count(
                        services, sets[candidates], round_index + wanted, settings
                    )
                    for (target, wire), slices in measured.items():
                        rounds[target, wire, candidates].append(slices)
                        log.info(
                            "round %d, %d candidates, %s over %s: p50 %.2f ms",
                            round_index + 1,
                            candidates,
                            target,
                            wire,
                            round_p50(slices),
                        )
                    bar.update()
    return [
        summarise(target, wire, sets[candidates], rounds[target, wire, candidates])
        for wire in settings.bench_wire_formats
        for target in targets
        for candidates in counts
    ]


def measure_count(
    services: Mapping[str, ServiceProcess],
    requests: RequestSet,
    shift: int,
    settings: BenchSettings,
) -> dict[tuple[str, str], list[Pass]]:
    """One round at one candidate count: (target, format) -> its slices of timed requests. The
    first slice of each turn is preceded by its untimed warm-up; the order of the turns rotates
    from slice to slice (and starts at `shift`)."""
    bodies = {wire: requests.encoded(WIRE_FORMATS[wire]) for wire in settings.bench_wire_formats}
    turns = [(target, wire) for wire in settings.bench_wire_formats for target in services]
    warmup, size = settings.bench_warmup, settings.bench_slice_requests
    slices: dict[tuple[str, str], list[Pass]] = defaultdict(list)
    for index, start in enumerate(range(warmup, warmup + settings.bench_requests, size)):
        stop = min(start + size, warmup + settings.bench_requests)
        first = index == 0
        for target, wire in rotated(turns, shift + index):
            part = bodies[wire][start - warmup if first else start : stop]
            slices[target, wire].append(
                measure_pass(
                    services[target],
                    part,
                    warmup if first else 0,
                    settings.bench_request_timeout_seconds,
                    WIRE_FORMATS[wire],
                )
            )
    return slices
