"""``python -m research.bench.bench`` (``make bench``): how far /prerank sits above its floor, in one
run on one machine.

Starts the echo floor (`research.bench.echo`: the service's stack and request path without the model),
the real service serving the newest FIT bundle and the real service serving the newest Two-Tower
bundle, each from its bundle directory with Redis unused, and drives each with a closed-loop
client at every candidate count, in rounds that rotate the order of the targets. Then times FIT's
decoupled scoring against the full model once per (user, item) pair in process, and the 2-worker
service under an open-loop load at increasing rates. Writes docs/benchmarks/latency.md and
latency.png and prints the issue's ratios, each PASS or MISS.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import platform
import resource
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson
import psutil
import torch
import uvloop
from tqdm import tqdm

from loadtest.settings import REPO_ROOT, BenchSettings
from offline_jobs.training.loop import new_model
from prerank_contract.bundle import BundleError, verify_bundle_dir, write_text_atomically
from prerank_contract.features import PADDING_INDEX, FeatureSchema
from prerank_contract.manifest import ITEM_FEATURES_FILE, ITEM_IDS_FILE, Manifest
from prerank_contract.settings import ENV_PREFIX, load_settings
from prerank_model.config import ModelConfig
from research.http_client import PERCENTILES, closed_loop
from research.service_process import ServiceProcess
from service.settings import ServiceSettings

log = logging.getLogger("research.bench.bench")

# The goals ("Serving speed near the floor"): ratios of one run on one machine.
ECHO_FLOOR_GOAL = 2.5  # FIT p50 / echo p50, at most
ECHO_FLOOR_CANDIDATES = 5_000
TWO_TOWER_GOAL = 1.10  # FIT p50 / Two-Tower p50, at most (the paper reports 1.06)
TWO_TOWER_CANDIDATES = (1_000, 5_000)
SCORING_SPEEDUP_GOAL = 50.0  # full model per pair / decoupled scoring, at least
THROUGHPUT_GOAL = 300.0  # requests/s of the 2-worker service, at least
TAIL_RATIO_LIMIT = 4.0  # p99 / p50 a throughput rate may reach

ECHO, FIT, TWO_TOWER = "echo", "fit", "two_tower"
TARGETS = (ECHO, FIT, TWO_TOWER)
HTTP_OK = 200
HTTP_PORT = 80
WORKERS_FIELD = "workers"  # ServiceSettings' field behind PRERANK_WORKERS
SECONDS_TO_MS = 1000.0
PERCENT = 100.0
HEADLINE_PERCENTILES = (50, 99)
PLOT_SIZE_INCHES = (10.0, 4.0)
PLOT_DPI = 120

QUICK: dict[str, Any] = {  # --quick: a short run that still goes through every step
    "bench_requests": 30,
    "bench_warmup": 5,
    "bench_rounds": 1,
    "bench_scoring_repeats": 5,
    "bench_scoring_warmup": 1,
    "bench_throughput_seconds": 2.0,
    "bench_throughput_warmup_seconds": 1.0,
}


class BenchError(Exception):
    """Something the benchmark needs is missing; the message says what to do."""


# ---------------------------------------------------------------- bundles and requests


def newest_bundle(bundles_dir: Path, model_name: str) -> Path:
    """The newest `{model_name}-*` bundle of `bundles_dir` (version ids start with the UTC time),
    verified (every file's sha256)."""
    found = sorted(
        path
        for path in bundles_dir.glob(f"{model_name}-*")
        if path.is_dir() and not path.is_symlink()
    )
    if not found:
        raise BenchError(
            f"no {model_name} bundle under {bundles_dir}: run `make train` first (it writes the "
            "FIT and Two-Tower bundles there), or set PRERANK_BENCH_BUNDLES_DIR"
        )
    return found[-1]


def checked_bundle(path: Path, model_name: str) -> Manifest:
    """The bundle's manifest, once every file's checksum holds and it is `model_name`'s."""
    try:
        manifest = verify_bundle_dir(path)
    except BundleError as exc:
        raise BenchError(f"{exc} (rebuild it: `make train`)") from exc
    if manifest.model_name != model_name:
        raise BenchError(f"{path} holds a {manifest.model_name} bundle, not {model_name}")
    return manifest


def user_id_vocabulary(schema: FeatureSchema) -> int:
    """How many user ids the schema's `user_id` field knows (requests draw from [1, this))."""
    sizes = [spec.vocab_size for spec in schema.user_fields if spec.name == "user_id"]
    return sizes[0] if sizes else PADDING_INDEX + 2


@dataclass(frozen=True)
class RequestSet:
    """Pre-encoded /prerank bodies of one candidate count, every one with `history` ids."""

    candidates: int  # ids per request
    known: int  # of them in the catalogue; the rest are ids past it (looked up, not scored)
    bodies: list[bytes]


def request_set(
    catalogue: np.ndarray,
    candidates: int,
    count: int,
    history: int,
    users: int,
    rng: np.random.Generator,
) -> RequestSet:
    """`count` bodies of `candidates` distinct ids each: catalogue items drawn without
    replacement, plus (when the catalogue is smaller) ids past its largest, which every target
    reports unknown. No duplicates: a duplicate would change the work."""
    known = min(candidates, catalogue.size)
    unknown_ids = catalogue.max() + 1 + np.arange(candidates - known, dtype=np.int64)
    bodies = []
    for _ in range(count):
        ids = np.concatenate([rng.choice(catalogue, size=known, replace=False), unknown_ids])
        rng.shuffle(ids)
        behaviours = rng.choice(catalogue, size=min(history, catalogue.size), replace=False)
        body = {
            "user_id": int(rng.integers(1, max(users, 2))),
            "history": behaviours.tolist(),
            "candidates": ids.tolist(),
        }
        bodies.append(orjson.dumps(body))
    return RequestSet(candidates, known, bodies)


# ---------------------------------------------------------------- closed loop


def cpu_seconds(processes: Sequence[psutil.Process]) -> float:
    """User + system CPU seconds the processes have used so far (ended ones count zero)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every process of the machine has used so far (all cores; not idle, not
    waiting on I/O, not stolen by the hypervisor)."""
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + times.irq + times.softirq)


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds used over one measured window, by whom."""

    window_seconds: float  # wall time of the window
    client: float  # this (client) process
    server: float  # the target's processes
    other: float  # every other process of the machine: interference

    def percent(self, seconds: float) -> float:
        """`seconds` of CPU as % of one core over the window."""
        return PERCENT * seconds / self.window_seconds


class CpuMeter:
    """Started on creation over this process and `server`; `stop()` gives the use since."""

    def __init__(self, server: Sequence[psutil.Process]) -> None:
        self.client, self.server = [psutil.Process()], list(server)
        self.started = self._read()

    def _read(self) -> tuple[float, float, float, float]:
        return (
            time.perf_counter(),
            cpu_seconds(self.client),
            cpu_seconds(self.server),
            machine_busy_seconds(),
        )

    def stop(self) -> CpuUse:
        wall, client, server, machine = (
            now - then for now, then in zip(self._read(), self.started, strict=True)
        )
        # clock ticks are 10 ms apart: a short window can read a little below zero
        return CpuUse(wall, client, server, max(machine - client - server, 0.0))


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


# ---------------------------------------------------------------- in-process scoring paths


@dataclass(frozen=True)
class ScoringPaths:
    """FIT's two ways of scoring one user's candidates, timed in process (torch)."""

    candidates: int
    decoupled_ms: float  # median: K-way user tower once + gather of precomputed heads + scorer
    per_pair_ms: float  # median: the full model once per (user, item) pair
    decoupled_kernel_ms: float  # median time of a call spent in the kernel (page faults)
    per_pair_kernel_ms: float
    max_abs_logit_diff: float  # the two paths' logits agree (eval mode: hard meta queries)
    repeats: int
    torch_threads: int
    weights: str  # where the weights came from

    @property
    def speedup(self) -> float:
        return self.per_pair_ms / self.decoupled_ms


def timings_ms(run: Callable[[], object], repeats: int) -> list[tuple[float, float]]:
    """(wall time, time in the kernel) of each of `repeats` calls of `run`: the kernel's share
    is mostly page faults of fresh intermediates, which swings with the allocator's state."""
    timings = []
    for _ in range(repeats):
        kernel_before = resource.getrusage(resource.RUSAGE_THREAD).ru_stime
        started = time.perf_counter()
        run()
        wall = time.perf_counter() - started
        kernel = resource.getrusage(resource.RUSAGE_THREAD).ru_stime - kernel_before
        timings.append((wall * SECONDS_TO_MS, kernel * SECONDS_TO_MS))
    return timings


def time_scoring_paths(
    bundle_dir: Path, manifest: Manifest, settings: BenchSettings
) -> ScoringPaths:
    """Decoupled scoring against the full model per pair, at `bench_scoring_candidates` items of
    the bundle's catalogue. The bundle carries ONNX graphs, not torch weights (and no item tower
    at all: item heads are precomputed), so the model is built from the bundle's own config and
    feature schema with seeded initial weights: the timing compares compute paths, which the
    weights' values do not change."""
    schema = manifest.feature_schema
    config = ModelConfig.model_validate(manifest.config["model"])
    torch.set_num_threads(settings.bench_torch_threads)
    model = new_model(manifest.model_name, schema, config, settings.bench_seed).eval()
    rng = np.random.default_rng(settings.bench_seed)
    catalogue_features = torch.from_numpy(np.load(bundle_dir / ITEM_FEATURES_FILE))  # [M, S_i]
    count = min(settings.bench_scoring_candidates, catalogue_features.shape[0])
    rows = torch.from_numpy(rng.choice(catalogue_features.shape[0], size=count, replace=False))
    user_features = torch.from_numpy(
        np.concatenate(
            [rng.integers(1, spec.vocab_size, size=spec.slots) for spec in schema.user_fields]
        )[None, :]
    )  # [1, S_u]
    history = torch.full(
        (1, schema.max_history, schema.item_slots), PADDING_INDEX, dtype=torch.int64
    )  # [1, L, S_i], left-padded like the service's
    behaviours = min(settings.bench_history, schema.max_history)
    if behaviours:
        picked = rng.choice(catalogue_features.shape[0], size=behaviours, replace=False)
        history[0, schema.max_history - behaviours :] = catalogue_features[picked]
    with torch.inference_mode():
        item_heads, meta_index = model.encode_items(catalogue_features)  # offline: [M, H_v, d]
        pair_users = user_features.repeat(count, 1)  # [N, S_u]: the user once per pair
        pair_history = history.repeat(count, 1, 1)  # [N, L, S_i]
        pair_items = catalogue_features[rows]  # [N, S_i]

        def decoupled() -> torch.Tensor:
            user_heads = model.encode_user(user_features, history)[0]  # [K, H_u, d]
            return model.score(user_heads, item_heads[rows], meta_index[rows])  # [N]

        def per_pair() -> torch.Tensor:
            return model(pair_users, pair_history, pair_items)  # [N]

        difference = float((decoupled() - per_pair()).abs().max())
        timings_ms(decoupled, settings.bench_scoring_warmup)
        timings_ms(per_pair, settings.bench_scoring_warmup)
        decoupled_ms: list[tuple[float, float]] = []
        per_pair_ms: list[tuple[float, float]] = []
        for _ in range(settings.bench_scoring_repeats):  # interleaved: drift hits both paths
            decoupled_ms += timings_ms(decoupled, 1)
            per_pair_ms += timings_ms(per_pair, 1)
    return ScoringPaths(
        candidates=count,
        decoupled_ms=statistics.median(wall for wall, _ in decoupled_ms),
        per_pair_ms=statistics.median(wall for wall, _ in per_pair_ms),
        decoupled_kernel_ms=statistics.median(kernel for _, kernel in decoupled_ms),
        per_pair_kernel_ms=statistics.median(kernel for _, kernel in per_pair_ms),
        max_abs_logit_diff=difference,
        repeats=settings.bench_scoring_repeats,
        torch_threads=settings.bench_torch_threads,
        weights=f"seeded initial weights (seed {settings.bench_seed}) of {manifest.version}'s "
        "config and feature schema; the bundle carries no torch weights",
    )


# ---------------------------------------------------------------- open loop


@dataclass(frozen=True)
class OpenLoopRun:
    """One open-loop run: requests sent on a fixed schedule, whatever the answers do."""

    rate: float  # scheduled requests/s
    seconds: float  # scheduled duration
    latencies_ms: np.ndarray  # [sent]: from the scheduled send time (or an earlier send) to the
    # answer read
    send_lag_ms: np.ndarray  # [sent]: how late the generator sent each request (< 0: early)
    errors: int  # answers other than 200, timeouts, refused connections
    error_kinds: dict[str, int]  # status code or exception name -> count
    send_seconds: float  # first to last actual send
    wall_seconds: float  # first scheduled send to the last answer

    @property
    def sent(self) -> int:
        return int(self.latencies_ms.size)

    @property
    def offered_rate(self) -> float:
        """Requests/s the generator actually sent."""
        return (self.sent - 1) / self.send_seconds if self.sent > 1 else 0.0

    @property
    def completed_rate(self) -> float:
        """200 answers per second of the run."""
        return (self.sent - self.errors) / self.wall_seconds


class StaleConnectionError(ConnectionError):
    """A connection closed by the server before any byte of the answer came back."""


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to one server for the open loop, on asyncio streams.

    A request takes the most recently used idle connection, or opens one while fewer than
    `limit` are in use, or waits for one in arrival order. An idle connection the server has
    closed meanwhile (uvicorn closes keep-alive connections idle for 5 s) is dropped and the
    request goes on the next one. Hand-written rather than httpx: once a backlog forms, httpx's
    pool spends time per waiting request on every request, so the generator, not the server,
    falls behind (measured here: 96% of a core for 213 answers/s while 2 FIT workers idled at
    35%)."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self.slots = asyncio.Semaphore(limit)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def exchange(self, request: bytes) -> int:
        """Send one whole HTTP request, read the whole answer; its status code."""
        async with self.slots:
            while self.idle:
                reader, writer = self.idle.pop()
                if reader.at_eof() or writer.is_closing():
                    writer.close()
                    continue
                try:
                    return await self._round_trip(reader, writer, request)
                except StaleConnectionError:
                    continue  # closed while idle: the request was not read, send it again
            reader, writer = await asyncio.open_connection(self.host, self.port)
            return await self._round_trip(reader, writer, request)

    async def _round_trip(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> int:
        try:
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise
                raise StaleConnectionError("closed before answering") from exc
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise StaleConnectionError("reset before answering") from exc
            status, length, keep_alive = parse_response_head(head)
            await reader.readexactly(length)
        except BaseException:  # an error, a timeout: the connection's state is unknown
            writer.close()
            raise
        if keep_alive:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


def parse_response_head(head: bytes) -> tuple[int, int, bool]:
    """An HTTP/1.1 status line and headers -> (status, content length, keep-alive)."""
    lines = head.lower().split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = dict(line.split(b":", 1) for line in lines[1:] if b":" in line)
    if b"content-length" not in headers:
        raise ValueError("an answer without content-length")
    keep_alive = headers.get(b"connection", b"").strip() != b"close"
    return status, int(headers[b"content-length"]), keep_alive


def encode_requests(url: str, bodies: Sequence[bytes]) -> list[bytes]:
    """Whole HTTP/1.1 POST requests of `bodies` to `url`, encoded before any is timed."""
    parts = urlsplit(url)
    return [
        (
            f"POST {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]


async def open_loop_async(
    url: str,
    bodies: Sequence[bytes],
    rate: float,
    seconds: float,
    timeout: float,
    connections: int,
) -> OpenLoopRun:
    """POST bodies (cycled) at `rate` per second for `seconds`: request i is due at
    start + i / rate and sent then on a pooled connection, whatever earlier answers do; it is
    timed from when it was due, so a late send or a wait for a connection counts against the
    latency (no coordinated omission)."""
    count = max(1, round(rate * seconds))
    requests = encode_requests(url, bodies)
    parts = urlsplit(url)
    pool = ConnectionPool(parts.hostname or "", parts.port or HTTP_PORT, connections)
    latencies = np.zeros(count, dtype=np.float64)
    lags = np.zeros(count, dtype=np.float64)
    sent_at = np.zeros(count, dtype=np.float64)
    error_kinds: Counter[str] = Counter()

    async def send(index: int, due: float) -> None:
        sent_at[index] = time.perf_counter()
        lags[index] = sent_at[index] - due
        try:
            exchange = pool.exchange(requests[index % len(requests)])
            status = await asyncio.wait_for(exchange, timeout)
            if status != HTTP_OK:
                error_kinds[str(status)] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            error_kinds[type(exc).__name__] += 1  # refused, reset, timed out, malformed
        # uvloop's timers may fire up to a millisecond early: an early request is timed from
        # when it was sent, a late one from when it was due
        latencies[index] = time.perf_counter() - min(due, sent_at[index])

    tasks = []
    start = time.perf_counter()
    try:
        for index in range(count):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(index, due)))
        await asyncio.gather(*tasks)
    finally:
        pool.close()
    ended = time.perf_counter()
    return OpenLoopRun(
        rate=rate,
        seconds=seconds,
        latencies_ms=latencies * SECONDS_TO_MS,
        send_lag_ms=lags * SECONDS_TO_MS,
        errors=sum(error_kinds.values()),
        error_kinds=dict(error_kinds),
        send_seconds=float(sent_at.max() - sent_at.min()),
        wall_seconds=ended - start,
    )


def open_loop(
    url: str,
    bodies: Sequence[bytes],
    rate: float,
    seconds: float,
    *,
    timeout: float,
    connections: int,
) -> OpenLoopRun:
    """`open_loop_async` on its own uvloop event loop (the loop uvicorn runs on)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(open_loop_async(url, bodies, rate, seconds, timeout, connections))


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


def rate_holds(
    p50_ms: float, p99_ms: float, errors: int, completed: float, rate: float, keep_up: float
) -> bool:
    """Zero errors, p99 within TAIL_RATIO_LIMIT x p50, and answers keeping pace with the rate."""
    return errors == 0 and p99_ms <= TAIL_RATIO_LIMIT * p50_ms and completed >= keep_up * rate


def step_up(
    service: ServiceProcess,
    bodies: Sequence[bytes],
    settings: BenchSettings,
    label: str,
    *,
    stop_at_break: bool = True,
) -> list[RateStep]:
    """Open loop at each rate of `bench_throughput_rates` (increasing) until one breaks; with
    `stop_at_break=False`, on past a tail that broke until errors come or answers fall behind
    (the whole curve, for a reference server)."""
    url = f"{service.url}/prerank"
    rates = sorted(settings.bench_throughput_rates)

    def run_at(rate: float, seconds: float) -> OpenLoopRun:
        return open_loop(
            url,
            bodies,
            rate,
            seconds,
            timeout=settings.bench_throughput_request_timeout_seconds,
            connections=settings.bench_throughput_connections,
        )

    if settings.bench_throughput_warmup_seconds:
        run_at(rates[0], settings.bench_throughput_warmup_seconds)
    steps: list[RateStep] = []
    for rate in tqdm(rates, desc=f"open loop {label}", disable=not settings.bench_progress):
        meter = CpuMeter(service.processes())
        run = run_at(rate, settings.bench_throughput_seconds)
        cpu = meter.stop()
        p50, p99 = (float(v) for v in np.percentile(run.latencies_ms, HEADLINE_PERCENTILES))
        step = RateStep(
            rate=rate,
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
            held=rate_holds(
                p50, p99, run.errors, run.completed_rate, rate, settings.bench_throughput_keep_up
            ),
        )
        steps.append(step)
        log.info("open loop %s: %s", label, step)
        overloaded = step.errors > 0 or step.completed_rate < (
            settings.bench_throughput_keep_up * rate
        )
        if overloaded or (stop_at_break and not step.held):
            break
    return steps


@dataclass(frozen=True)
class Throughput:
    """The open-loop step-up against one server."""

    target: str
    workers: int
    processes: int  # server processes seen (a supervisor and its workers)
    candidates: int
    steps: list[RateStep] = field(default_factory=list)
    not_measured: str | None = None  # why there are no steps

    @property
    def best(self) -> RateStep | None:
        """The highest rate held before the first that did not (rates increase)."""
        best = None
        for step in self.steps:
            if not step.held:
                break
            best = step
        return best


def service_env(settings: BenchSettings) -> dict[str, str]:
    """PRERANK_* of every started server: no deadline fallback, no shutdown drain."""
    return {
        f"{ENV_PREFIX}DEADLINE_MS": str(settings.bench_deadline_ms),
        f"{ENV_PREFIX}SHUTDOWN_DRAIN_SECONDS": "0",
    }


def max_candidates(settings: BenchSettings) -> int:
    return max(*settings.bench_candidates, settings.bench_throughput_candidates)


def measure_throughput(
    fit_bundle: Path, catalogue: np.ndarray, users: int, settings: BenchSettings
) -> Throughput:
    """The FIT service with PRERANK_WORKERS=bench_throughput_workers under the open-loop
    step-up; not measured (with the reason) while the service has no such setting."""
    workers = settings.bench_throughput_workers
    candidates = settings.bench_throughput_candidates
    if WORKERS_FIELD not in ServiceSettings.model_fields:
        return Throughput(
            FIT,
            workers,
            0,
            candidates,
            not_measured="the service has no PRERANK_WORKERS setting yet "
            "(no `workers` field in service/settings.py)",
        )
    rng = np.random.default_rng(settings.bench_seed)
    bodies = request_set(
        catalogue, candidates, settings.bench_throughput_bodies, settings.bench_history, users, rng
    ).bodies
    env = service_env(settings) | {f"{ENV_PREFIX}WORKERS": str(workers)}
    log_path = settings.bench_log_dir / f"{FIT}-{workers}-workers.log"
    with ExitStack() as stack:
        try:
            service = stack.enter_context(
                ServiceProcess.from_bundle_dir(
                    fit_bundle, log_path, max_candidates(settings), env_overrides=env
                )
            )
        except (RuntimeError, TimeoutError) as exc:  # a multi-worker service that cannot start
            reason = f"the service with PRERANK_WORKERS={workers} did not start: {exc}"
            return Throughput(FIT, workers, 0, candidates, not_measured=reason)
        processes = len(service.processes())
        steps = step_up(service, bodies, settings, f"{FIT} x{workers}")
    return Throughput(FIT, workers, processes, candidates, steps)


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """One goal of the issue: a ratio against its limit."""

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

    def line(self) -> str:
        value = "-" if self.value is None else f"{self.value:.2f}"
        sign = "<=" if self.at_most else ">="
        return f"{self.status:<6} {self.goal}: {value} ({sign} {self.limit:g}); {self.detail}"


def p50_of(rows: Sequence[LatencyRow], target: str, candidates: int) -> float | None:
    found = [r.p50_ms for r in rows if r.target == target and r.candidates == candidates]
    return found[0] if found else None


def echo_floor_verdict(rows: Sequence[LatencyRow]) -> Verdict:
    goal = f"/prerank FIT p50 / echo floor p50 at {ECHO_FLOOR_CANDIDATES:,} candidates"
    fit, echo = p50_of(rows, FIT, ECHO_FLOOR_CANDIDATES), p50_of(rows, ECHO, ECHO_FLOOR_CANDIDATES)
    if fit is None or echo is None:
        missing = f"{ECHO_FLOOR_CANDIDATES:,} candidates not in PRERANK_BENCH_CANDIDATES"
        return Verdict(goal, None, ECHO_FLOOR_GOAL, True, missing)
    detail = f"FIT {fit:.2f} ms, echo {echo:.2f} ms"
    return Verdict(goal, fit / echo, ECHO_FLOOR_GOAL, True, detail)


def two_tower_verdict(rows: Sequence[LatencyRow]) -> Verdict:
    counts = " and ".join(f"{n:,}" for n in TWO_TOWER_CANDIDATES)
    goal = f"FIT p50 / Two-Tower p50 at {counts} candidates (the larger)"
    ratios = {}
    for candidates in TWO_TOWER_CANDIDATES:
        fit, two_tower = p50_of(rows, FIT, candidates), p50_of(rows, TWO_TOWER, candidates)
        if fit is None or two_tower is None:
            missing = f"{candidates:,} candidates not in PRERANK_BENCH_CANDIDATES"
            return Verdict(goal, None, TWO_TOWER_GOAL, True, missing)
        ratios[candidates] = (fit / two_tower, fit, two_tower)
    detail = "; ".join(
        f"{n:,}: {ratio:.3f} ({fit:.2f} / {tt:.2f} ms)" for n, (ratio, fit, tt) in ratios.items()
    )
    worst = max(ratio for ratio, _, _ in ratios.values())
    return Verdict(goal, worst, TWO_TOWER_GOAL, True, f"{detail}; paper 1.06")


def scoring_verdict(scoring: ScoringPaths | None) -> Verdict:
    goal = "full model per pair / decoupled scoring, in process"
    if scoring is None:
        return Verdict(goal, None, SCORING_SPEEDUP_GOAL, False, "no FIT bundle timed")
    detail = (
        f"{scoring.candidates:,} candidates: decoupled {scoring.decoupled_ms:.2f} ms, "
        f"per pair {scoring.per_pair_ms:.2f} ms"
    )
    return Verdict(goal, scoring.speedup, SCORING_SPEEDUP_GOAL, False, detail)


def throughput_verdict(throughput: Throughput) -> Verdict:
    goal = (
        f"{throughput.workers} workers, {throughput.candidates:,} candidates: req/s held with "
        f"p99 <= {TAIL_RATIO_LIMIT:g} x p50 and zero errors"
    )
    if throughput.not_measured is not None:
        return Verdict(goal, None, THROUGHPUT_GOAL, False, throughput.not_measured)
    best, last = throughput.best, throughput.steps[-1]
    held = (
        "no rate held"
        if best is None
        else f"held {best.rate:g}/s (p50 {best.p50_ms:.2f}, p99 {best.p99_ms:.2f} ms, "
        f"generator CPU {best.generator_cpu_percent:.0f}%)"
    )
    broke = (
        f"broke at {last.rate:g}/s ({describe_break(last)})"
        if not last.held
        else "every rate tried held"
    )
    value = 0.0 if best is None else best.rate
    return Verdict(goal, value, THROUGHPUT_GOAL, False, f"{held}; {broke}")


def describe_break(step: RateStep) -> str:
    reasons = []
    if step.errors:
        reasons.append(f"{step.errors} errors{error_kinds_note(step.error_kinds)}")
    if step.p99_ms > TAIL_RATIO_LIMIT * step.p50_ms:
        reasons.append(f"p99 {step.p99_ms:.1f} ms > {TAIL_RATIO_LIMIT:g} x p50 {step.p50_ms:.1f}")
    if not reasons:
        reasons.append(f"answers at {step.completed_rate:.0f}/s fell behind")
    return ", ".join(reasons)


# ---------------------------------------------------------------- report


@dataclass(frozen=True)
class MachineFacts:
    cpu_model: str
    logical_cores: int
    physical_cores: int | None
    python: str
    onnxruntime: str
    torch: str
    numpy: str
    system: str
    load_average: tuple[float, float, float]  # 1, 5, 15 minutes, when the facts were taken

    @classmethod
    def here(cls) -> MachineFacts:
        import onnxruntime

        return cls(
            cpu_model=cpu_model(),
            logical_cores=os.cpu_count() or 0,
            physical_cores=psutil.cpu_count(logical=False),
            python=platform.python_version(),
            onnxruntime=onnxruntime.__version__,
            torch=torch.__version__,
            numpy=np.__version__,
            system=platform.platform(),
            load_average=os.getloadavg(),
        )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass(frozen=True)
class BenchReport:
    command: str
    started: str  # UTC, ISO 8601
    load_at_start: tuple[float, float, float]  # 1, 5, 15 minutes
    seconds: float
    machine: MachineFacts
    settings: BenchSettings
    versions: dict[str, str]  # target -> served version
    catalogue: int
    rows: list[LatencyRow]
    scoring: ScoringPaths | None
    throughput: Throughput
    echo_throughput: Throughput | None
    verdicts: list[Verdict]


def verdicts_of(
    rows: Sequence[LatencyRow], scoring: ScoringPaths | None, throughput: Throughput
) -> list[Verdict]:
    return [
        echo_floor_verdict(rows),
        two_tower_verdict(rows),
        scoring_verdict(scoring),
        throughput_verdict(throughput),
    ]


def latency_table(rows: Sequence[LatencyRow]) -> list[str]:
    lines = [
        "| target | N sent | N known | p50 ms | p95 ms | p99 ms | req/s | client CPU % | "
        "server CPU % | other CPU % | timed requests | errors | deadline fallbacks |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {r.target} | {r.candidates:,} | {r.known:,} | {r.p50_ms:.2f} | {r.p95_ms:.2f} | "
        f"{r.p99_ms:.2f} | {r.requests_per_second:.0f} | {r.client_cpu_percent:.0f} | "
        f"{r.server_cpu_percent:.0f} | {r.other_cpu_percent:.0f} | {r.requests} | {r.errors} | "
        f"{r.deadline_fallbacks} |"
        for r in rows
    ]
    return lines


def error_kinds_note(kinds: Mapping[str, int]) -> str:
    """ " (503: 2, TimeoutError: 1)", or nothing without errors."""
    return f" ({', '.join(f'{kind}: {count}' for kind, count in kinds.items())})" if kinds else ""


def throughput_section(throughput: Throughput, title: str) -> list[str]:
    lines = [f"### {title}", ""]
    if throughput.not_measured is not None:
        return [*lines, f"Not measured: {throughput.not_measured}.", ""]
    lines += [
        f"{throughput.processes} server process(es), {throughput.candidates:,} candidates per "
        "request; latency counted from each request's scheduled send time.",
        "",
        "| rate /s | sent | sent /s | answered /s | errors | p50 ms | p99 ms | p99 / p50 | "
        "send lag p99 ms | generator CPU % | server CPU % | other CPU % | held |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|",
    ]
    lines += [
        f"| {s.rate:g} | {s.sent} | {s.offered_rate:.0f} | {s.completed_rate:.0f} | "
        f"{s.errors}{error_kinds_note(s.error_kinds)} | "
        f"{s.p50_ms:.2f} | {s.p99_ms:.2f} | {s.p99_ms / s.p50_ms:.1f} | "
        f"{s.send_lag_p99_ms:.2f} | {s.generator_cpu_percent:.0f} | "
        f"{s.server_cpu_percent:.0f} | {s.other_cpu_percent:.0f} | {'yes' if s.held else 'no'} |"
        for s in throughput.steps
    ]
    return [*lines, ""]


def render_markdown(report: BenchReport) -> str:
    s, m = report.settings, report.machine
    scoring = report.scoring
    lines = [
        "# /prerank latency against its floor",
        "",
        f"Written on {report.started} in {report.seconds:.0f} s by `{report.command}` "
        "(`make bench` runs `.venv/bin/python -m research.bench.bench $(ARGS)`). Every figure below "
        "comes from that one run on one machine; compare ratios, not absolute times, across "
        "machines.",
        "",
        "## Verdicts (the issue's goals)",
        "",
        "| status | goal | ratio | limit | figures |",
        "|---|---|--:|--:|---|",
    ]
    for v in report.verdicts:
        value = "-" if v.value is None else f"{v.value:.2f}"
        sign = "<=" if v.at_most else ">="
        lines.append(f"| {v.status} | {v.goal} | {value} | {sign} {v.limit:g} | {v.detail} |")
    lines += [
        "",
        "## Machine",
        "",
        f"- CPU: {m.cpu_model}; {m.logical_cores} logical cores"
        + (f", {m.physical_cores} physical" if m.physical_cores else ""),
        f"- {m.system}; Python {m.python}, ONNX Runtime {m.onnxruntime}, torch {m.torch}, "
        f"numpy {m.numpy}",
        "- load average (1, 5, 15 min) when the run started: "
        + ", ".join(f"{load:.2f}" for load in report.load_at_start)
        + "; when it ended: "
        + ", ".join(f"{load:.2f}" for load in m.load_average)
        + " (anything else running shares the cores with the targets and the client)",
        "",
        "## Closed loop: one connection, one request at a time",
        "",
        "Targets: `echo` (`python -m research.bench.echo`: FastAPI + uvicorn, the route's raw-body read, "
        "`service.ranking.parse_request` in a worker thread, de-duplication, catalogue lookup, "
        "ordering by an id hash, the same orjson answer: the floor), `fit` and `two_tower` "
        "(`python -m service`, one process, its default threads). Versions: "
        + ", ".join(f"{t} `{v}`" for t, v in report.versions.items())
        + ".",
        "",
        f"Per target and N: {s.bench_warmup} warm-up + {s.bench_requests} timed requests per "
        f"round, {s.bench_rounds} round(s); within a round every target gets the same bodies, "
        "back to back, the order rotating between turns. Each request carries "
        f"{s.bench_history} history ids (the user tower runs on real input) and no `top_k` "
        "(every known candidate comes back scored). CPU is user + system time over the timed "
        "requests, as % of one core: the client is this benchmark's process (it also parses "
        "each answer to count deadline fallbacks), the server all of the target's processes, "
        "other every other process of the machine over the same window (interference: near 0 "
        "on a quiet machine).",
        "",
        *latency_table(report.rows),
        "",
        "![p50 and p99 latency against candidates](latency.png)",
        "",
        "## In process: decoupled scoring against the full model per pair",
        "",
    ]
    if scoring is None:
        lines.append("Not measured.")
    else:
        lines += [
            f"FIT in torch (`prerank_model.models.fit.FIT`), {scoring.weights}. "
            f"{scoring.candidates:,} candidates of one user, `torch.inference_mode()`, "
            f"{scoring.torch_threads} torch thread(s), median of {scoring.repeats} interleaved "
            "repeats. Decoupled: `encode_user` once (the K-way user tower) + the item heads and "
            "meta indices precomputed by `encode_items` (offline, not timed) gathered for the "
            "candidates + `score`. Per pair: `FIT.forward` on N (user, item) rows, i.e. the "
            "item tower and the user tower under the item's own meta query for every pair (not "
            "`encode_user` on the user repeated N times: that runs all K meta queries per pair, "
            "K times the per-pair model, and would flatter the ratio K-fold). "
            f"Largest |logit difference| of the two paths: {scoring.max_abs_logit_diff:.2e}.",
            "",
            "| path | ms | of which in the kernel |",
            "|---|--:|--:|",
            f"| decoupled | {scoring.decoupled_ms:.3f} | {scoring.decoupled_kernel_ms:.1f} |",
            f"| full model per pair | {scoring.per_pair_ms:.3f} | "
            f"{scoring.per_pair_kernel_ms:.1f} |",
            f"| speed-up | {scoring.speedup:.1f} x | |",
            "",
            "The kernel's time is page faults of fresh intermediates (the per-pair DIN over "
            "N x L behaviours: with a DIN unit of 64 hidden units ~100 MB per call, far less "
            "with the default linear unit); whether the allocator hands back "
            "pages it already has or maps new ones differs between runs, so the per-pair wall "
            "time can differ between runs while the decoupled path's does not; the last column "
            "is what this run paid.",
        ]
    lines += ["", "## Open loop: requests at a fixed rate, increasing until one breaks", ""]
    lines += [
        f"A rate holds with zero errors, p99 <= {TAIL_RATIO_LIMIT:g} x p50 and answers keeping "
        f"pace (>= {s.bench_throughput_keep_up:.0%} of the rate: an overloaded server's queue can "
        f"grow while p99 stays under {TAIL_RATIO_LIMIT:g} x p50). {s.bench_throughput_seconds:g} s "
        "per rate after a warm-up at the lowest. The generator runs in this process, on the same "
        "cores as the server: asyncio streams on uvloop with a keep-alive connection pool "
        f"(at most {s.bench_throughput_connections} connections), requests encoded beforehand; "
        "its CPU share is in the tables.",
        "",
    ]
    lines += throughput_section(
        report.throughput,
        f"FIT, PRERANK_WORKERS={report.throughput.workers}",
    )
    if report.echo_throughput is not None:
        lines += throughput_section(
            report.echo_throughput,
            "Echo floor, 1 process (the same stack without the model, for reference; past a "
            "broken tail the rates go on until errors come or answers fall behind)",
        )
    lines += [
        "## Notes",
        "",
        "- The services serve their bundle directory with `PRERANK_USE_REDIS=false`: Redis is "
        "not in the measured path, so the feature-store read is skipped (each request's own "
        "`history` and user id feed the user tower). Only `deadline` fallbacks (counted above; "
        f"PRERANK_DEADLINE_MS={s.bench_deadline_ms:g}) are not the full model's answer.",
        f"- The catalogue has {report.catalogue:,} items. Requests of more candidates carry "
        "every catalogue item once plus ids past the catalogue (unknown to every target: looked "
        "up and reported, not scored), never duplicates; the table gives N sent and N known.",
        "- The echo floor skips what the service does around the model besides the request path "
        "itself: its dependency injection, in-flight count and Prometheus observations "
        "(microseconds per request).",
        "- Both kinds of server stall about 20 ms every couple of thousand requests: Python's "
        "full (generation 2) garbage collections of their heaps. They set the p99 of some rows. "
        "The client freezes its own heap (`gc.freeze()`) before measuring, so its collections "
        "are not timed as the server's.",
        "",
    ]
    return "\n".join(lines)


def plot_latency(rows: Sequence[LatencyRow], path: Path) -> None:
    """p50 and p99 against N, one line per target; written to a temp name, then renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(HEADLINE_PERCENTILES), figsize=PLOT_SIZE_INCHES, sharey=True)
    targets = list(dict.fromkeys(r.target for r in rows))
    for axis, percentile in zip(axes, HEADLINE_PERCENTILES, strict=True):
        for target in targets:
            mine = sorted((r for r in rows if r.target == target), key=lambda r: r.candidates)
            axis.plot(
                [r.candidates for r in mine],
                [getattr(r, f"p{percentile}_ms") for r in mine],
                marker="o",
                label=target,
            )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("candidates per request")
        axis.set_title(f"p{percentile}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[0].legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(tmp, dpi=PLOT_DPI)
    plt.close(figure)
    os.replace(tmp, path)


def write_report(report: BenchReport, report_dir: Path) -> tuple[Path, Path]:
    """latency.md and latency.png under `report_dir`, each via a temp file and a rename."""
    markdown, image = report_dir / "latency.md", report_dir / "latency.png"
    plot_latency(report.rows, image)
    write_text_atomically(markdown, render_markdown(report))
    return markdown, image


# ---------------------------------------------------------------- the run


def run_bench(settings: BenchSettings, command: str) -> BenchReport:
    """Every measurement of one `make bench`."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    load_at_start = os.getloadavg()
    bundles = {
        FIT: settings.bench_fit_bundle or newest_bundle(settings.bench_bundles_dir, FIT),
        TWO_TOWER: settings.bench_two_tower_bundle
        or newest_bundle(settings.bench_bundles_dir, TWO_TOWER),
    }
    manifests = {name: checked_bundle(path, name) for name, path in bundles.items()}
    catalogue = np.load(bundles[FIT] / ITEM_IDS_FILE, allow_pickle=False).astype(np.int64)
    users = user_id_vocabulary(manifests[FIT].feature_schema)
    if manifests[TWO_TOWER].item_count != catalogue.size:
        log.warning("the Two-Tower bundle's catalogue differs from FIT's: N known differs")
    log.info("bundles: %s", {name: str(path) for name, path in bundles.items()})
    env = service_env(settings)
    limit = max_candidates(settings)
    logs = settings.bench_log_dir
    echo_throughput = None
    # echo reads the FIT bundle's catalogue only (ids outside it are unknown, as in the service)
    with (
        ServiceProcess.from_bundle_dir(
            bundles[FIT],
            logs / f"{ECHO}.log",
            limit,
            env_overrides=env,
            module="research.bench.echo",
        ) as echo,
        ServiceProcess.from_bundle_dir(
            bundles[FIT], logs / f"{FIT}.log", limit, env_overrides=env
        ) as fit,
        ServiceProcess.from_bundle_dir(
            bundles[TWO_TOWER], logs / f"{TWO_TOWER}.log", limit, env_overrides=env
        ) as two_tower,
    ):
        services = {ECHO: echo, FIT: fit, TWO_TOWER: two_tower}
        rows = measure_latency(services, catalogue, users, settings)
        if settings.bench_echo_throughput:
            rng = np.random.default_rng(settings.bench_seed)
            bodies = request_set(
                catalogue,
                settings.bench_throughput_candidates,
                settings.bench_throughput_bodies,
                settings.bench_history,
                users,
                rng,
            ).bodies
            echo_throughput = Throughput(
                ECHO,
                1,
                len(echo.processes()),
                settings.bench_throughput_candidates,
                step_up(echo, bodies, settings, ECHO, stop_at_break=False),
            )
    log.info("in-process scoring paths")
    scoring = time_scoring_paths(bundles[FIT], manifests[FIT], settings)
    throughput = measure_throughput(bundles[FIT], catalogue, users, settings)
    return BenchReport(
        command=command,
        started=started_at.strftime("%Y-%m-%d %H:%M UTC"),
        load_at_start=load_at_start,
        seconds=time.perf_counter() - started,
        machine=MachineFacts.here(),
        settings=settings,
        versions={ECHO: "echo", **{name: m.version for name, m in manifests.items()}},
        catalogue=int(catalogue.size),
        rows=rows,
        scoring=scoring,
        throughput=throughput,
        echo_throughput=echo_throughput,
        verdicts=verdicts_of(rows, scoring, throughput),
    )


def print_summary(report: BenchReport) -> None:
    print("\n".join(latency_table(report.rows)))
    if report.scoring is not None:
        s = report.scoring
        print(
            f"\nscoring {s.candidates:,} candidates in process: decoupled {s.decoupled_ms:.3f} ms, "
            f"full model per pair {s.per_pair_ms:.3f} ms ({s.speedup:.1f} x)"
        )
    for throughput in (report.throughput, report.echo_throughput):
        if throughput is not None and throughput.steps:
            best = throughput.best
            held = "none" if best is None else f"{best.rate:g}/s"
            print(f"open loop {throughput.target} x{throughput.workers}: highest rate held {held}")
    print("\nverdicts:")
    for verdict in report.verdicts:
        print(f"  {verdict.line()}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m research.bench.bench",
        description="Echo floor vs FIT vs Two-Tower through /prerank, decoupled vs per-pair "
        "scoring, 2-worker throughput; writes docs/benchmarks/latency.md and latency.png. "
        "PRERANK_BENCH_* settings (loadtest/settings.py) set the rest.",
    )
    parser.add_argument("--quick", action="store_true", help="a short run through every step")
    parser.add_argument("--requests", type=int, help="timed requests per target, N and round")
    parser.add_argument("--rounds", type=int, help="rounds over every (N, target)")
    parser.add_argument("--candidates", type=int, nargs="+", help="candidate counts N")
    parser.add_argument("--fit-bundle", type=Path, help="FIT bundle directory")
    parser.add_argument("--two-tower-bundle", type=Path, help="Two-Tower bundle directory")
    parser.add_argument("--report-dir", type=Path, help="where latency.md and .png go")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    """Settings the flags set (over PRERANK_BENCH_*)."""
    overrides: dict[str, Any] = dict(QUICK) if args.quick else {}
    flags = {
        "bench_requests": args.requests,
        "bench_rounds": args.rounds,
        "bench_candidates": tuple(args.candidates) if args.candidates else None,
        "bench_fit_bundle": args.fit_bundle,
        "bench_two_tower_bundle": args.two_tower_bundle,
        "bench_report_dir": args.report_dir,
        "bench_progress": False if args.no_progress else None,
    }
    return overrides | {name: value for name, value in flags.items() if value is not None}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings(BenchSettings, **overrides_of(args))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    executable = os.path.relpath(sys.executable, REPO_ROOT)
    flags = sys.argv[1:] if argv is None else list(argv)
    command = " ".join([executable, "-m", "research.bench.bench", *flags])
    # This process holds torch's and the app's objects: a full collection of them stalls the
    # client for tens of ms, which would be timed as the server's. Frozen, collections skip them.
    gc.collect()
    gc.freeze()
    try:
        report = run_bench(settings, command)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    markdown, image = write_report(report, settings.bench_report_dir)
    print_summary(report)
    print(f"\nwrote {markdown} and {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
