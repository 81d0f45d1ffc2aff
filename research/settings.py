"""Typed settings of the measurements (``PRERANK_BENCH_*``, beside the common Redis settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from prerank_contract.http import AnswerFormat
from prerank_contract.settings import CommonSettings

REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchSettings(CommonSettings):
    """``python -m research.bench`` (``make bench``, ``PRERANK_BENCH_*``): the echo floor, FIT and
    Two-Tower through the real service in every wire format, the scorer's efficiency, the naive
    per-pair path, and the 2-worker throughput of FIT and the floor, in one run on one machine,
    each goal judged against its limit."""

    bench_bundles_dir: Path = Field(
        default=REPO_ROOT / "artifacts" / "bundles",
        description="where `make train` writes bundles; the newest fit-* and two_tower-* are used",
    )
    bench_fit_bundle: Path | None = Field(
        default=None, description="FIT bundle directory (default: the newest fit-* bundle)"
    )
    bench_two_tower_bundle: Path | None = Field(
        default=None,
        description="Two-Tower bundle directory (default: the newest two_tower-* bundle)",
    )
    bench_candidates: tuple[int, ...] = Field(
        default=(100, 500, 1_000, 2_000, 5_000, 10_000),
        min_length=1,
        description="candidates per request; past the catalogue size the rest are unknown ids",
    )
    bench_wire_formats: tuple[AnswerFormat, ...] = Field(
        default=("json", "columnar_json", "msgpack"),
        min_length=1,
        description="wire formats of the closed loop, named by the answer's: json (JSON body and "
        "answer), columnar_json (JSON body, columnar JSON answer), msgpack (MessagePack body and "
        "columnar answer)",
    )
    bench_requests: int = Field(
        default=300, ge=1, description="timed requests per target, candidate count and round"
    )
    bench_warmup: int = Field(
        default=15, ge=0, description="untimed requests before each target's timed ones"
    )
    bench_rounds: int = Field(
        default=3,
        ge=1,
        description="rounds over every (candidate count, target); each round changes the order "
        "of the targets, so drift on the machine is shared out",
    )
    bench_slice_requests: int = Field(
        default=25,
        ge=1,
        description="timed requests a (target, format) turn sends before the next turn's: the "
        "turns take their slices in rotation, so a slow spell of the machine falls on each alike",
    )
    bench_history: int = Field(
        default=20, ge=0, description="history item ids each request carries (the user tower's)"
    )
    bench_seed: int = Field(default=0, description="seed of the drawn requests and the model")
    bench_deadline_ms: float = Field(
        default=60_000.0,
        gt=0,
        description="the services' PRERANK_DEADLINE_MS: high, so no answer is a deadline fallback",
    )
    bench_request_timeout_seconds: float = Field(
        default=60.0, gt=0, description="client timeout of one request"
    )
    bench_torch_threads: int = Field(
        default=1,
        ge=1,
        description="torch intra-op threads of the in-process timing (the service runs ONNX "
        "Runtime with 1 thread per op)",
    )
    bench_scoring_candidates: int = Field(
        default=5_000,
        ge=1,
        description="candidates of the in-process timing of the naive path (the full model per "
        "pair) against decoupled scoring",
    )
    bench_scoring_repeats: int = Field(
        default=15, ge=1, description="timed repeats of each scoring path (the median is kept)"
    )
    bench_scoring_warmup: int = Field(
        default=3, ge=0, description="untimed repeats of each scoring path"
    )
    bench_scorer_candidates: int = Field(
        default=5_000,
        ge=1,
        description="candidates of the scorer-efficiency timing (FIT's ONNX scorer session, in "
        "process)",
    )
    bench_scorer_calls: int = Field(
        default=200, ge=1, description="timed scorer calls (the median is kept)"
    )
    bench_scorer_warmup_calls: int = Field(
        default=20, ge=0, description="untimed scorer calls before them (arena, caches)"
    )
    bench_gemm_size: int = Field(
        default=512,
        ge=1,
        description="n of the n x n x n float32 GEMM that gives the machine's single-core rate",
    )
    bench_gemm_calls: int = Field(
        default=40, ge=1, description="timed GEMMs (the median gives the rate)"
    )
    bench_throughput_workers: int = Field(
        default=2, ge=1, description="PRERANK_WORKERS of FIT and of the echo floor in the open loop"
    )
    bench_throughput_candidates: int = Field(
        default=1_000, ge=1, description="candidates per request of the throughput run"
    )
    bench_throughput_rates: tuple[float, ...] = Field(
        default=(
            100.0,
            200.0,
            300.0,
            400.0,
            500.0,
            600.0,
            800.0,
            1_000.0,
            1_200.0,
            1_500.0,
            2_000.0,
            2_500.0,
            3_000.0,
        ),
        min_length=1,
        description="open-loop arrival rates (requests/s), tried in increasing order until one "
        "breaks",
    )
    bench_throughput_wire_formats: tuple[AnswerFormat, ...] = Field(
        default=("json", "msgpack"),
        min_length=1,
        description="wire formats of the open loop (json is the one the throughput goal is "
        "judged in; the others are reported beside it)",
    )
    bench_throughput_request_threads: tuple[int | None, ...] = Field(
        default=(None, 0),
        min_length=1,
        description="PRERANK_REQUEST_THREADS of FIT and of the echo floor in the open loop, one "
        "step-up of both per entry (None: the service's default, the one the throughput goal is "
        "judged in; 0: each request on the event loop)",
    )
    bench_throughput_seconds: float = Field(
        default=8.0, gt=0, description="duration of each open-loop rate"
    )
    bench_throughput_reruns: int = Field(
        default=1,
        ge=0,
        description="times a rate that broke is run again before it ends a step-up: one tail "
        "spike of a shared machine must not (seen: the floor breaking at a rate FIT then held)",
    )
    bench_throughput_warmup_seconds: float = Field(
        default=2.0, ge=0, description="open-loop warm-up at the lowest rate, not recorded"
    )
    bench_throughput_bodies: int = Field(
        default=200, ge=1, description="distinct request bodies the open loop cycles through"
    )
    bench_throughput_connections: int = Field(
        default=256, ge=1, description="most connections the open-loop generator keeps open"
    )
    bench_throughput_request_timeout_seconds: float = Field(
        default=10.0, gt=0, description="open-loop timeout per request (a timeout is an error)"
    )
    bench_throughput_keep_up: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="a rate holds only when answers complete at this share of it or more "
        "(an overloaded server's queue can grow with p99 still within bench_tail_ratio_limit)",
    )
    bench_echo_floor_goal: float = Field(
        default=2.5,
        gt=0,
        description="goal: FIT p50 / echo floor p50 at bench_echo_floor_candidates, at most",
    )
    bench_echo_floor_candidates: int = Field(
        default=5_000, ge=1, description="candidates per request the echo-floor goal is judged at"
    )
    bench_two_tower_goal: float = Field(
        default=1.10,
        gt=0,
        description="goal: FIT p50 / Two-Tower p50 at each of bench_two_tower_candidates, at most "
        "(the paper reports 1.06)",
    )
    bench_two_tower_candidates: tuple[int, ...] = Field(
        default=(1_000, 5_000),
        min_length=1,
        description="candidates per request the Two-Tower goal is judged at (the largest ratio "
        "decides)",
    )
    bench_binary_floor_goal: float = Field(
        default=1.0,
        gt=0,
        description="goal: FIT p50 over bench_binary_wire_format / the JSON echo floor's p50, at "
        "bench_binary_floor_candidates, at most (the whole model costs less than JSON did)",
    )
    bench_binary_floor_candidates: int = Field(
        default=5_000,
        ge=1,
        description="candidates per request the binary-format goal is judged at",
    )
    bench_binary_wire_format: AnswerFormat = Field(
        default="msgpack", description="the binary wire format of the binary-format goal"
    )
    bench_throughput_ratio_goal: float = Field(
        default=0.70,
        gt=0,
        description="goal: the highest rate FIT holds / the highest the echo floor holds, both "
        "with bench_throughput_workers workers over JSON, at least",
    )
    bench_scorer_efficiency_goal: float = Field(
        default=0.25,
        gt=0,
        description="goal: the FLOP rate FIT's scorer achieves at bench_scorer_candidates / the "
        "single-core GEMM rate, at least",
    )
    bench_tail_ratio_limit: float = Field(
        default=4.0, gt=0, description="p99 / p50 an open-loop rate may reach and still hold"
    )
    bench_report_dir: Path = Field(
        default=REPO_ROOT / "docs" / "benchmarks",
        description="where latency.md and latency.png are written",
    )
    bench_log_dir: Path = Field(
        default=REPO_ROOT / "artifacts" / "bench", description="logs of the started servers"
    )
    bench_progress: bool = Field(default=True, description="progress bars")


class DataBenchSettings(CommonSettings):
    """``python -m research.data_bench`` (``make bench-data``, ``PRERANK_DATA_BENCH_*``): a
    generated interaction log with string ids, its users and items tables and a dataset spec,
    read by the spec loader in a fresh process; its time and peak RSS judged against the goals."""

    data_bench_interactions: int = Field(
        default=10_000_000, ge=1, description="rows of the generated interaction log"
    )
    data_bench_users: int = Field(
        default=1_000_000, ge=1, description="users (rows of the users table; ids drawn uniformly)"
    )
    data_bench_items: int = Field(
        default=200_000,
        ge=2,
        description="items (rows of the items table; ids drawn by popularity)",
    )
    data_bench_zipf_exponent: float = Field(
        default=1.0,
        ge=0,
        description="item popularity: the item of popularity rank r is drawn with weight r^-s",
    )
    data_bench_positive_share: float = Field(
        default=0.3, gt=0, lt=1, description="share of interactions labelled 1"
    )
    data_bench_seed: int = Field(default=0, description="seed of the generated files")
    data_bench_cache_dir: Path = Field(
        default=REPO_ROOT / "artifacts" / "data_bench",
        description="where the generated files are kept, one folder per generation setting, "
        "reused when present",
    )
    data_bench_time_goal_seconds: float = Field(
        default=120.0, gt=0, description="goal: wall time of the data step, at most"
    )
    data_bench_rss_goal_gib: float = Field(
        default=4.0,
        gt=0,
        description="goal: peak RSS of the process running the data step, at most",
    )
    data_bench_child_timeout_seconds: float = Field(
        default=1800.0, gt=0, description="longest run of the measuring child process"
    )
    data_bench_report: Path = Field(
        default=REPO_ROOT / "docs" / "benchmarks" / "data.md", description="report path"
    )
