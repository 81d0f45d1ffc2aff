"""The closed-loop measurement: every (target, wire format, candidate count) row has sane
figures, and the request sets pad past the catalogue with unknown ids, never duplicates, and
carry the same requests in every format."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import msgpack
import numpy as np
import orjson

from research.bench.latency_passes import measure_count, measure_latency
from research.bench.request_sets import request_set
from research.bench.wire_formats import WIRE_FORMATS
from research.service_process import ServiceProcess
from research.settings import BenchSettings


def test_closed_loop_figures_are_sane(
    servers: dict[str, ServiceProcess], catalogue: np.ndarray
) -> None:
    counts = (10, 50, catalogue.size + 100)  # the last one past the catalogue
    wires = tuple(WIRE_FORMATS)
    settings = BenchSettings(
        bench_candidates=counts,
        bench_wire_formats=wires,
        bench_requests=8,
        bench_warmup=2,
        bench_rounds=2,
        bench_slice_requests=3,  # 8 timed requests per turn: slices of 3, 3 and 2
        bench_history=5,
        bench_progress=False,
    )
    starts = []

    @contextmanager
    def start_targets() -> Iterator[dict[str, ServiceProcess]]:
        starts.append(len(starts))
        yield servers

    rows = measure_latency(start_targets, catalogue, 100, settings)
    assert len(starts) == settings.bench_rounds  # the targets start anew for each round
    assert [(r.wire, r.target, r.candidates) for r in rows] == [
        (w, t, n) for w in wires for t in servers for n in counts
    ]
    for row in rows:
        assert row.requests == 16 and row.errors == 0 and row.deadline_fallbacks == 0
        assert len(row.round_p50_ms) == 2 and all(p50 > 0 for p50 in row.round_p50_ms)
        assert 0 < row.p50_ms <= row.p95_ms <= row.p99_ms
        assert row.requests_per_second > 0
        assert row.client_cpu_percent >= 0 and row.server_cpu_percent >= 0
        assert row.other_cpu_percent >= 0
        assert row.known == min(row.candidates, catalogue.size)


def test_request_sets_pad_past_the_catalogue_with_unknown_ids(catalogue: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    requests = request_set(catalogue, catalogue.size + 20, 3, 4, 50, rng)
    assert requests.known == catalogue.size
    json_bodies = requests.bodies
    assert [msgpack.unpackb(body) for body in requests.encoded(WIRE_FORMATS["msgpack"])] == [
        orjson.loads(body) for body in json_bodies
    ]  # the same requests in every format
    for body in json_bodies:
        parsed = orjson.loads(body)
        ids = np.asarray(parsed["candidates"])
        assert ids.size == np.unique(ids).size == catalogue.size + 20
        assert np.isin(ids, catalogue).sum() == catalogue.size
        assert len(parsed["history"]) == 4 and 1 <= parsed["user_id"] < 50


def test_turns_take_their_slices_in_rotation(
    servers: dict[str, ServiceProcess], catalogue: np.ndarray
) -> None:
    settings = BenchSettings(
        bench_wire_formats=("json", "msgpack"),
        bench_requests=7,
        bench_warmup=2,
        bench_slice_requests=3,
        bench_history=5,
        bench_progress=False,
    )
    requests = request_set(catalogue, 20, 9, 5, 100, np.random.default_rng(0))
    slices = measure_count(servers, requests, 0, settings)
    assert set(slices) == {(t, w) for t in servers for w in ("json", "msgpack")}
    for passes in slices.values():
        assert [p.latencies_ms.size for p in passes] == [3, 3, 1]  # the warm-up untimed
        assert all(p.errors == 0 for p in passes)
