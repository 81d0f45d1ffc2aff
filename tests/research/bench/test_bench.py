"""The benchmark (`python -m research.bench.bench`) on the tiny bundle: the echo floor answers in the
service's shape, the closed loop and the open loop measure what they claim, the verdicts and the
report. No speed goal is asserted here: only `make bench` on a quiet machine measures those."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from loadtest.settings import BenchSettings
from prerank_contract.manifest import ITEM_IDS_FILE
from research.bench.bench import (
    ECHO,
    FIT,
    TWO_TOWER,
    BenchError,
    BenchReport,
    ConnectionPool,
    LatencyRow,
    MachineFacts,
    RateStep,
    ScoringPaths,
    Throughput,
    echo_floor_verdict,
    encode_requests,
    measure_latency,
    measure_throughput,
    newest_bundle,
    open_loop,
    rate_holds,
    request_set,
    scoring_verdict,
    throughput_verdict,
    time_scoring_paths,
    two_tower_verdict,
    verdicts_of,
    write_report,
)
from research.bench.echo import ECHO_VERSION
from research.http_client import closed_loop
from research.service_process import ServiceProcess, free_port
from service.settings import ServiceSettings
from tests.conftest import Bundle

MAX_CANDIDATES = 500  # over the tiny catalogue's 300 items
UNKNOWN_ID = 99_999_999
OPEN_LOOP_RATE = 100.0
OPEN_LOOP_SECONDS = 2.0
RATE_TOLERANCE = 0.1
SCHEDULE_TOLERANCE_MS = 5.0


@pytest.fixture(scope="module")
def catalogue(fit_bundle: Bundle) -> np.ndarray:
    return np.load(fit_bundle.path / ITEM_IDS_FILE).astype(np.int64)


@pytest.fixture(scope="module")
def servers(
    fit_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    """The echo floor and the real service, both on the tiny FIT bundle, Redis unused."""
    logs = tmp_path_factory.mktemp("bench")
    env = {"PRERANK_DEADLINE_MS": "60000"}
    with (
        ServiceProcess.from_bundle_dir(
            fit_bundle.path,
            logs / "echo.log",
            MAX_CANDIDATES,
            env_overrides=env,
            module="research.bench.echo",
        ) as echo,
        ServiceProcess.from_bundle_dir(
            fit_bundle.path, logs / "fit.log", MAX_CANDIDATES, env_overrides=env
        ) as fit,
    ):
        yield {ECHO: echo, FIT: fit}


def post(service: ServiceProcess, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    import httpx

    response = httpx.post(f"{service.url}/prerank", content=orjson.dumps(body), timeout=30)
    return response.status_code, response.json()


def test_echo_answers_in_the_service_shape(
    servers: dict[str, ServiceProcess], catalogue: np.ndarray
) -> None:
    known = catalogue[:40].tolist()
    body = {
        "user_id": 7,
        "history": catalogue[50:60].tolist(),
        "candidates": [*known, UNKNOWN_ID, known[3]],
    }
    (echo_status, echo), (fit_status, fit) = (post(servers[t], body) for t in (ECHO, FIT))
    assert echo_status == fit_status == 200
    assert echo.keys() == fit.keys()
    assert echo["model_version"] == ECHO_VERSION != fit["model_version"]
    for answer in (echo, fit):
        items = answer["items"]
        assert isinstance(items, list)
        assert sorted(item["item_id"] for item in items) == sorted(known)
        assert all(item.keys() == {"item_id", "score"} for item in items)
        scores = [item["score"] for item in items]
        assert scores == sorted(scores, reverse=True)  # best first
    for same in ("arm", "unknown_items", "duplicate_items", "user_source", "cold_start"):
        assert echo[same] == fit[same], same
    assert echo["unknown_items"] == [UNKNOWN_ID] and echo["duplicate_items"] == [known[3]]

    top = {**body, "top_k": 5}
    assert len(post(servers[ECHO], top)[1]["items"]) == len(post(servers[FIT], top)[1]["items"])
    bad = {"user_id": 7, "candidates": [known[0], "x"]}
    assert post(servers[ECHO], bad) == post(servers[FIT], bad)  # the same parser: the same 422


def test_closed_loop_figures_are_sane(
    servers: dict[str, ServiceProcess], catalogue: np.ndarray, tmp_path: Path
) -> None:
    counts = (10, 50, catalogue.size + 100)  # the last one past the catalogue
    settings = BenchSettings(
        bench_candidates=counts,
        bench_requests=8,
        bench_warmup=2,
        bench_rounds=2,
        bench_history=5,
        bench_progress=False,
    )
    rows = measure_latency(servers, catalogue, 100, settings)
    assert [(r.target, r.candidates) for r in rows] == [(t, n) for t in servers for n in counts]
    for row in rows:
        assert row.requests == 16 and row.errors == 0 and row.deadline_fallbacks == 0
        assert 0 < row.p50_ms <= row.p95_ms <= row.p99_ms
        assert row.requests_per_second > 0
        assert row.client_cpu_percent >= 0 and row.server_cpu_percent >= 0
        assert row.other_cpu_percent >= 0
        assert row.known == min(row.candidates, catalogue.size)


def test_request_sets_pad_past_the_catalogue_with_unknown_ids(catalogue: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    requests = request_set(catalogue, catalogue.size + 20, 3, 4, 50, rng)
    assert requests.known == catalogue.size
    for body in requests.bodies:
        parsed = orjson.loads(body)
        ids = np.asarray(parsed["candidates"])
        assert ids.size == np.unique(ids).size == catalogue.size + 20
        assert np.isin(ids, catalogue).sum() == catalogue.size
        assert len(parsed["history"]) == 4 and 1 <= parsed["user_id"] < 50


def test_open_loop_hits_its_rate_against_the_echo_floor(
    servers: dict[str, ServiceProcess], catalogue: np.ndarray
) -> None:
    rng = np.random.default_rng(1)
    bodies = request_set(catalogue, 50, 20, 5, 100, rng).bodies
    url = f"{servers[ECHO].url}/prerank"
    run = open_loop(url, bodies, OPEN_LOOP_RATE, OPEN_LOOP_SECONDS, timeout=10, connections=32)
    assert run.sent == OPEN_LOOP_RATE * OPEN_LOOP_SECONDS and run.errors == 0
    assert run.offered_rate == pytest.approx(OPEN_LOOP_RATE, rel=RATE_TOLERANCE)
    assert run.completed_rate == pytest.approx(OPEN_LOOP_RATE, rel=RATE_TOLERANCE)
    assert np.all(run.latencies_ms > 0)
    assert np.median(np.abs(run.send_lag_ms)) < SCHEDULE_TOLERANCE_MS  # sent on schedule


def test_open_loop_counts_errors(servers: dict[str, ServiceProcess]) -> None:
    invalid = [b'{"user_id": 1, "candidates": ["x"]}']  # a 422
    url = f"{servers[ECHO].url}/prerank"
    run = open_loop(url, invalid, 50.0, 0.2, timeout=10, connections=4)
    assert run.sent == 10 and run.errors == 10 and run.error_kinds == {"422": 10}
    closed = open_loop(
        f"http://127.0.0.1:{free_port()}/prerank", invalid, 50.0, 0.2, timeout=2, connections=4
    )
    assert closed.errors == closed.sent == 10
    assert closed.error_kinds == {"ConnectionRefusedError": 10}


def test_the_pool_sends_again_on_a_connection_the_server_closed_while_idle() -> None:
    """A server that closes each connection after answering, without saying so, stands for one
    whose keep-alive timeout closed idle connections: no request may fail for it."""
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

    async def scenario() -> tuple[list[int], int]:
        accepted = 0

        async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(parse_content_length(head))
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/prerank"
        pool = ConnectionPool("127.0.0.1", port, 4)
        statuses = [await pool.exchange(request) for request in encode_requests(url, [b"{}"] * 3)]
        pool.close()
        server.close()
        return statuses, accepted

    statuses, accepted = asyncio.run(scenario())
    assert statuses == [200, 200, 200] and accepted == 3


def parse_content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_throughput_steps_up_the_multi_worker_service(
    fit_bundle: Bundle, catalogue: np.ndarray, tmp_path: Path
) -> None:
    settings = BenchSettings(
        bench_throughput_rates=(40.0, 20.0),
        bench_throughput_seconds=1.0,
        bench_throughput_warmup_seconds=0.5,
        bench_throughput_candidates=50,
        bench_throughput_bodies=10,
        bench_candidates=(50,),
        bench_log_dir=tmp_path,
        bench_progress=False,
    )
    throughput = measure_throughput(fit_bundle.path, catalogue, 100, settings)
    if "workers" not in ServiceSettings.model_fields:  # the multi-worker service is not there yet
        assert throughput.not_measured is not None and not throughput.steps
        assert throughput_verdict(throughput).status.startswith("MISS (not measured: ")
        return
    assert throughput.not_measured is None
    assert throughput.processes >= settings.bench_throughput_workers
    assert [s.rate for s in throughput.steps][:1] == [20.0]  # increasing order
    assert all(s.errors == 0 and s.sent > 0 and s.server_cpu_percent > 0 for s in throughput.steps)


def test_closed_loop_counts_errors(servers: dict[str, ServiceProcess]) -> None:
    bodies = [b'{"user_id": 1, "candidates": ["x"]}', b'{"user_id": 1, "candidates": [1]}']
    run = closed_loop(f"{servers[ECHO].url}/prerank", bodies)
    assert run.errors == 1 and run.latencies_ms.size == 2


def test_scoring_paths_agree_and_are_timed(fit_bundle: Bundle) -> None:
    settings = BenchSettings(
        bench_scoring_candidates=100, bench_scoring_repeats=2, bench_scoring_warmup=1
    )
    scoring = time_scoring_paths(fit_bundle.path, fit_bundle.manifest, settings)
    assert scoring.candidates == 100
    assert scoring.max_abs_logit_diff < 1e-4  # the decoupled path is the full model, gathered
    assert scoring.decoupled_ms > 0 and scoring.per_pair_ms > 0


def test_a_missing_bundle_says_to_train_first(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="make train"):
        newest_bundle(tmp_path, FIT)
    for name in ("fit-20260101T000000Z-a", "fit-20270101T000000Z-b", "fit_no_mqm-20280101T0Z-c"):
        (tmp_path / name).mkdir()
    assert newest_bundle(tmp_path, FIT).name == "fit-20270101T000000Z-b"


def row(target: str, candidates: int, p50_ms: float) -> LatencyRow:
    return LatencyRow(
        target=target,
        candidates=candidates,
        known=candidates,
        requests=10,
        errors=0,
        deadline_fallbacks=0,
        p50_ms=p50_ms,
        p95_ms=p50_ms * 1.5,
        p99_ms=p50_ms * 2,
        requests_per_second=1000 / p50_ms,
        client_cpu_percent=20.0,
        server_cpu_percent=90.0,
        other_cpu_percent=1.0,
    )


def step(rate: float, p50_ms: float, p99_ms: float, errors: int = 0) -> RateStep:
    return RateStep(
        rate=rate,
        sent=int(rate),
        offered_rate=rate,
        completed_rate=rate,
        errors=errors,
        error_kinds={"503": errors} if errors else {},
        p50_ms=p50_ms,
        p99_ms=p99_ms,
        send_lag_p99_ms=0.1,
        generator_cpu_percent=30.0,
        server_cpu_percent=150.0,
        other_cpu_percent=2.0,
        held=rate_holds(p50_ms, p99_ms, errors, rate, rate, 0.95),
    )


def scoring(decoupled_ms: float, per_pair_ms: float) -> ScoringPaths:
    return ScoringPaths(5_000, decoupled_ms, per_pair_ms, 0.0, 0.0, 1e-6, 3, 1, "seeded")


def test_verdicts_on_given_numbers() -> None:
    rows = [
        row(ECHO, 5_000, 2.0),
        row(FIT, 1_000, 1.05),
        row(TWO_TOWER, 1_000, 1.0),
        row(FIT, 5_000, 4.0),
        row(TWO_TOWER, 5_000, 3.5),
    ]
    assert echo_floor_verdict(rows).status == "PASS"  # 4.0 / 2.0 = 2.0
    assert echo_floor_verdict([*rows[1:], row(ECHO, 5_000, 1.0)]).status == "MISS"  # 4.0
    two_tower = two_tower_verdict(rows)  # 1.05 and 1.14: the larger decides
    assert two_tower.value == pytest.approx(4.0 / 3.5) and two_tower.status == "MISS"
    assert two_tower_verdict(rows[:3]).status.startswith("MISS (not measured: 5,000")
    assert scoring_verdict(scoring(1.0, 60.0)).status == "PASS"
    assert scoring_verdict(scoring(2.0, 60.0)).status == "MISS"

    held = Throughput(FIT, 2, 3, 1_000, [step(200, 2.0, 4.0), step(300, 2.0, 7.9)])
    assert throughput_verdict(held).status == "PASS"
    broke = Throughput(FIT, 2, 3, 1_000, [step(200, 2.0, 4.0), step(300, 2.0, 8.1)])
    assert throughput_verdict(broke).value == 200 and throughput_verdict(broke).status == "MISS"
    failing = Throughput(FIT, 2, 3, 1_000, [step(400, 2.0, 3.0, errors=1)])
    assert throughput_verdict(failing).value == 0
    curve = [step(100, 1.0, 2.0), step(200, 1.0, 5.0), step(300, 1.0, 2.0)]  # 200 broke
    past_a_break = Throughput(ECHO, 1, 1, 1_000, curve)
    assert past_a_break.best is not None and past_a_break.best.rate == 100
    missing = Throughput(FIT, 2, 0, 1_000, not_measured="no PRERANK_WORKERS")
    assert throughput_verdict(missing).status == "MISS (not measured: no PRERANK_WORKERS)"


def test_rate_holds_only_when_answers_keep_pace() -> None:
    assert rate_holds(2.0, 8.0, 0, 100.0, 100.0, 0.95)
    assert not rate_holds(2.0, 8.1, 0, 100.0, 100.0, 0.95)  # tail
    assert not rate_holds(2.0, 3.0, 1, 100.0, 100.0, 0.95)  # an error
    assert not rate_holds(2.0, 3.0, 0, 90.0, 100.0, 0.95)  # falling behind


def test_report_writer_writes_markdown_and_png(tmp_path: Path) -> None:
    counts = (100, 1_000, 5_000)
    rows = [
        row(t, n, n / 1000 * f) for t, f in ((ECHO, 1), (FIT, 2), (TWO_TOWER, 2)) for n in counts
    ]
    throughput = Throughput(FIT, 2, 3, 1_000, [step(100, 2.0, 3.0), step(200, 2.0, 9.0)])
    report = BenchReport(
        command="python -m research.bench.bench --quick",
        started="2026-01-01 00:00 UTC",
        load_at_start=(0.1, 0.2, 0.3),
        seconds=1.0,
        machine=MachineFacts.here(),
        settings=BenchSettings(),
        versions={ECHO: "echo", FIT: "fit-x", TWO_TOWER: "two_tower-y"},
        catalogue=5_000,
        rows=rows,
        scoring=scoring(1.0, 70.0),
        throughput=throughput,
        echo_throughput=None,
        verdicts=verdicts_of(rows, scoring(1.0, 70.0), throughput),
    )
    markdown, image = write_report(report, tmp_path / "benchmarks")
    text = markdown.read_text()
    assert "python -m research.bench.bench --quick" in text and "![" in text
    assert "| fit | 5,000 | 5,000 | 10.00 |" in text
    assert text.count("| PASS |") + text.count("| MISS |") == 4
    assert "fit-x" in text and "70.000" in text and "| 200 |" in text
    with Image.open(image) as png:
        assert png.format == "PNG" and png.size[0] > 0
    assert sorted(p.name for p in image.parent.iterdir()) == ["latency.md", "latency.png"]
