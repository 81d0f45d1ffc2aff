"""Typed settings of the service (env prefix ``PRERANK_``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from prerank_contract.blocks import DEFAULT_BLOCK_ROWS
from prerank_contract.settings import CommonSettings

# What `python -m service hash-key` prints: a sha256 digest, lower-case hex.
KEY_DIGEST = re.compile(r"[0-9a-f]{64}")


class ServiceSettings(CommonSettings):
    """Where the model comes from, request limits, and thread counts of the request path."""

    # An API key pasted where its digest belongs must not be echoed by an error message either.
    SECRET_FIELDS: ClassVar[frozenset[str]] = CommonSettings.SECRET_FIELDS | {"api_key_hashes"}

    host: str = Field(default="127.0.0.1", description="bind address")
    port: int = Field(default=8000, ge=1, le=65535, description="bind port")
    workers: int = Field(
        default=1,
        ge=1,
        description="server processes on the one port; above 1 they share the item table "
        "(memory-mapped from the bundle cache, a temp dir when PRERANK_BUNDLE_CACHE_DIR is unset) "
        "and /metrics sums all of them",
    )
    metrics_dir: Path | None = Field(
        default=None,
        description="prometheus_client's multiprocess directory when workers > 1 (emptied at "
        "start; default: a temp dir)",
    )
    bundle_dir: Path | None = Field(
        default=None, description="local bundle served when Redis has no active version"
    )
    bundle_cache_dir: Path | None = Field(
        default=None,
        description="where versions loaded from Redis are also kept on disk; at start, when Redis "
        "has no version or cannot be read, the newest cached one is served (before bundle_dir)",
    )
    bundle_cache_keep: int = Field(default=2, ge=1, description="versions kept in the cache")
    use_redis: bool = Field(
        default=True,
        description="load the active version and user features from Redis (False: bundle_dir only)",
    )
    max_candidates: int = Field(default=10_000, ge=1, description="per request")
    max_body_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="largest /prerank body read; a larger one is refused with 413 before parsing",
    )
    max_request_history: int = Field(
        default=1_000,
        ge=1,
        description="longest history a request may carry (the model reads "
        "the most recent max_history of it)",
    )
    feature_store_timeout_seconds: float = Field(
        default=0.25,
        gt=0,
        description="longest wait of a feature-store lookup (the request's remaining deadline "
        "bounds it further); past it the request is answered degraded instead of waiting",
    )
    feature_store_backoff_seconds: float = Field(
        default=0.1,
        gt=0,
        description="after a failed feature-store read, skip Redis this long (doubling per "
        "failed retry) and answer degraded at once",
    )
    feature_store_backoff_max_seconds: float = Field(
        default=5.0, gt=0, description="longest feature-store backoff"
    )
    deadline_ms: float = Field(
        default=50.0,
        gt=0,
        description="per-request deadline when the request sends no X-Prerank-Deadline-Ms; past "
        "it, before the user tower or the scorer runs, the answer is the cheap fallback order "
        "flagged degraded",
    )
    max_in_flight: int = Field(
        default=64,
        ge=1,
        description="/prerank requests answered at once; beyond it a fast 503 with Retry-After",
    )
    retry_after_seconds: int = Field(default=1, ge=0, description="Retry-After of an overload 503")
    # Two: one request's CPU work can run while another's waits on Redis. More threads only
    # contend for the GIL: two workers at 1,000 candidates, FIT held 300 req/s at 2.4-3.2 ms of
    # CPU per request with 1-2 threads, broke at 300 at 3.6 ms with 8 (docs/benchmarks).
    request_threads: int = Field(
        default=2,
        ge=0,
        description="worker threads running the CPU part of requests; 0: run it on the event "
        "loop, without a hand-off to a thread (less CPU and latency per request), but then a "
        "request waits in the socket while another computes, unseen by PRERANK_MAX_IN_FLIGHT "
        "and the deadline, and a slow feature-store read holds the probes",
    )
    blas_threads: int = Field(default=1, ge=1, description="BLAS/OpenMP threads of numpy")
    direct_index_max_ratio: float = Field(
        default=4.0,
        ge=0,
        description="look candidate ids up in a direct id -> row array when the largest item id "
        "+ 1 is at most this times the item count (4 bytes per id); else binary search",
    )
    gc_freeze: bool = Field(
        default=True,
        description="after start-up, move every object alive then out of the garbage "
        "collector's reach (gc.freeze), so full collections do not rescan them mid-request",
    )
    malloc_retain_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=0,
        description="freed memory the C allocator keeps for the next request rather than "
        "giving it back to the OS (glibc's trim threshold; blocks up to 32 MiB come from the "
        "heap, not a mapping of their own): without it a process can page-fault a request's "
        "arrays in anew every time; 0: the C library's adaptive defaults",
    )
    ort_intra_op_threads: int = Field(default=1, ge=1, description="ONNX Runtime threads per op")
    ort_inter_op_threads: int = Field(default=1, ge=1, description="ONNX Runtime parallel ops")
    ort_cpu_arena: bool = Field(default=True, description="ONNX Runtime CPU memory arena")
    scorer_block_rows: int = Field(
        default=DEFAULT_BLOCK_ROWS,
        ge=1,
        description="candidates per block of the scorer's layout (FIT's: candidates grouped by "
        "meta index, one GEMM per block; a group is padded to whole blocks)",
    )
    warmup_requests: int = Field(
        default=3, ge=1, description="real requests a version answers before it takes traffic"
    )
    warmup_candidates: int = Field(default=1_000, ge=1, description="candidates per warm-up")
    poll_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        description="how often Redis's active pointer and A/B split are read (0: never, serve "
        "the version loaded at start)",
    )
    refused_retry_seconds: float = Field(
        default=60.0, ge=0, description="a refused version is not loaded again before this"
    )
    follower_stop_seconds: float = Field(
        default=5.0, gt=0, description="how long shutdown waits for a load in progress"
    )
    cluster_examples: int = Field(
        default=5, ge=0, le=100, description="example items per cluster in GET /clusters"
    )
    shutdown_drain_seconds: float = Field(
        default=5.0,
        ge=0,
        description="after SIGTERM, /readyz answers 503 this long while requests are still served "
        "(load balancers stop sending), then the listener closes",
    )
    shutdown_timeout_seconds: float = Field(
        default=30.0, gt=0, description="after the drain, the longest wait for in-flight requests"
    )
    log_level: str = Field(default="info", description="uvicorn and service log level")
    api_key_hashes: tuple[str, ...] = Field(
        default=(),
        description="sha256 hex digests of the API keys accepted as `Authorization: Bearer <key>` "
        "on /prerank, /clusters and /metrics, and for the detail of /readyz (a JSON list; make "
        "one with `python -m service hash-key`); empty: no authentication",
    )

    @field_validator("api_key_hashes")
    @classmethod
    def _digests_not_keys(cls, digests: tuple[str, ...]) -> tuple[str, ...]:
        normalised = tuple(digest.strip().lower() for digest in digests)
        for index, digest in enumerate(normalised):
            if not KEY_DIGEST.fullmatch(digest):
                raise ValueError(
                    f"entry {index} is not a sha256 hex digest (64 hex characters): store the "
                    "digest of each key (`python -m service hash-key`), never the key"
                )
        return normalised
