"""``python -m research.scorer_bench``: FIT's scorer graph against its arithmetic, beside the
Two-Tower's.

Builds FIT and the Two-Tower with the default `ModelConfig` at seeded random weights on the
synthetic world's schema, exports their graphs with the project's exporter (parity checked), and
times each scorer graph in ONNX Runtime at each candidate count: the median ms per call with one
intra-op thread and with the service's default session options. Beside it: LSS's FLOPs per
request, the rate FIT's scorer achieves, a single-core numpy float32 GEMM rate measured in the
same run, and FIT's scorer time over (and minus) the Two-Tower's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from pydantic import Field
from threadpoolctl import threadpool_limits

from model_export.onnx_export import ParitySample, check_parity, export_graphs
from offline_jobs.data.synthetic import SyntheticConfig, synthetic_schema
from offline_jobs.training.loop import new_model
from prerank_contract.blocks import CandidateBlocks, candidate_blocks
from prerank_contract.features import FeatureSchema, FieldSpec
from prerank_contract.graphs import ITEM_HEADS, META_INDEX, SCORER, USER_HEADS
from prerank_contract.manifest import SCORER_FILE
from prerank_contract.settings import CommonSettings, load_settings
from prerank_model.config import ModelConfig
from prerank_model.models.base import PrerankModel
from service.sessions import session_options
from service.settings import ServiceSettings

MODELS = ("fit", "two_tower")
MS_PER_SECOND = 1e3
FLOPS_PER_GIGAFLOP = 1e9
FLOPS_PER_MEGAFLOP = 1e6
FLOPS_PER_MULTIPLY_ADD = 2
# Users and items of the export's parity sample: enough to exercise every graph, small enough
# that the parity check (one scorer run per user) costs nothing beside the timing.
PARITY_USERS = 2
PARITY_ITEMS = 256
MICROSECONDS_PER_MS = 1e3
# ONNX Runtime's profile names each node's kernel event "<node>_kernel_time".
KERNEL_EVENT_SUFFIX = "_kernel_time"
# Nodes whose time is that of the nodes of their subgraphs (an If or a Loop, as format 1's
# scorer had): counting them too would count those nodes twice.
CONTROL_FLOW_OPS = ("If", "Loop")


class ScorerBenchSettings(CommonSettings):
    """``python -m research.scorer_bench`` (``PRERANK_SCORER_BENCH_*``): candidate counts, how
    many calls are timed, and the size of the GEMM that gives the machine's single-core rate."""

    scorer_bench_candidates: tuple[int, ...] = Field(
        default=(1_000, 5_000), min_length=1, description="candidates per scorer call"
    )
    scorer_bench_calls: int = Field(
        default=500, ge=1, description="timed calls per case (the median is reported)"
    )
    scorer_bench_warmup_calls: int = Field(
        default=30, ge=0, description="untimed calls before each case (arena, caches)"
    )
    scorer_bench_gemm_size: int = Field(
        default=512, ge=1, description="n of the n x n x n float32 numpy GEMM (single core)"
    )
    scorer_bench_gemm_calls: int = Field(
        default=40, ge=1, description="timed GEMMs (the median gives the rate)"
    )
    scorer_bench_profile_calls: int = Field(
        default=200, ge=1, description="calls of FIT's scorer under ONNX Runtime's profiler"
    )
    scorer_bench_profile_top: int = Field(
        default=8, ge=1, description="nodes listed from that profile, by median time"
    )
    scorer_bench_seed: int = Field(default=0, description="weights, users and candidates")
    scorer_bench_parity_tolerance: float = Field(
        default=1e-5, gt=0, description="max abs diff of the exported graphs against PyTorch"
    )


@dataclass(frozen=True)
class ScorerTiming:
    """One model's scorer graph at one candidate count under one session configuration: the
    median wall time of a call, and the median CPU time of the calling thread (where ONNX
    Runtime runs a one-thread session's kernels), which time spent descheduled by other
    processes does not inflate."""

    model: str
    candidates: int
    intra_op_threads: int
    median_ms: float
    median_cpu_ms: float


@dataclass(frozen=True)
class NodeTime:
    """One node of a graph under ONNX Runtime's profiler: its kernel time per call."""

    node: str
    op_type: str
    median_ms: float


def lss_flops(config: ModelConfig, candidates: int) -> int:
    """FLOPs of LSS for one request (a multiply-add counts 2; biases and ReLUs left out):
    per candidate the H_u x H_v similarities over d, the row FC (H_v -> R on H_u rows), the
    column FC (H_u -> C on R columns) and the output (R * C -> 1)."""
    h_u, h_v, d = config.user_heads, config.item_heads, config.head_dim
    r, c = config.lss_row_dim, config.lss_col_dim
    per_candidate = h_u * h_v * d + h_u * h_v * r + r * h_u * c + r * c
    return FLOPS_PER_MULTIPLY_ADD * per_candidate * candidates


def gemm_gflops(size: int, calls: int) -> float:
    """Single-core float32 GEMM rate of numpy's BLAS: the median of `calls` n x n x n products."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    seconds = []
    with threadpool_limits(1):
        a @ b  # the first call pays for the BLAS's buffers
        for _ in range(calls):
            started = time.perf_counter()
            a @ b
            seconds.append(time.perf_counter() - started)
    return FLOPS_PER_MULTIPLY_ADD * size**3 / statistics.median(seconds) / FLOPS_PER_GIGAFLOP


def random_rows(fields: tuple[FieldSpec, ...], count: int, rng: np.random.Generator) -> np.ndarray:
    """[count, slots] int64 ids drawn uniformly from each field's known values (no padding)."""
    columns = [
        rng.integers(1, spec.vocab_size, size=(count, spec.slots), dtype=np.int64)
        for spec in fields
    ]
    return np.concatenate(columns, axis=1)


@torch.no_grad()
def scorer_inputs(
    model: PrerankModel, schema: FeatureSchema, candidates: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One user's K representations and `candidates` random items, as the service feeds them."""
    user_features = torch.from_numpy(random_rows(schema.user_fields, 1, rng))
    history = torch.from_numpy(
        random_rows(schema.item_fields, schema.max_history, rng)[None]
    )  # [1, L, S_i]
    items = torch.from_numpy(random_rows(schema.item_fields, candidates, rng))
    item_heads, meta_index = model.encode_items(items)
    user_heads = model.encode_user(user_features, history)[0]
    return {
        USER_HEADS: user_heads.numpy(),
        ITEM_HEADS: item_heads.numpy(),
        META_INDEX: meta_index.numpy(),
    }


@torch.no_grad()
def export_scorer(
    model: PrerankModel,
    schema: FeatureSchema,
    rng: np.random.Generator,
    out_dir: Path,
    tolerance: float,
) -> float:
    """Export the model's graphs into `out_dir` with the project's exporter; the scorer's parity
    (max abs diff against PyTorch; ParityError above `tolerance`)."""
    items = torch.from_numpy(random_rows(schema.item_fields, PARITY_ITEMS, rng))
    item_heads, meta_index = model.encode_items(items)
    history = random_rows(schema.item_fields, PARITY_USERS * schema.max_history, rng)
    sample = ParitySample(
        user_features=random_rows(schema.user_fields, PARITY_USERS, rng),
        history=history.reshape(PARITY_USERS, schema.max_history, -1),
        item_heads=item_heads.numpy(),
        meta_index=meta_index.numpy(),
    )
    export_graphs(model, sample, out_dir)
    return check_parity(model, sample, out_dir, tolerance)[SCORER]


def median_call_ms(call: Callable[[], object], calls: int, warmup: int) -> tuple[float, float]:
    """(median wall ms, median CPU ms of this thread) of `calls` calls after `warmup` more."""
    for _ in range(warmup):
        call()
    wall, cpu = [], []
    for _ in range(calls):
        started, started_cpu = time.perf_counter(), time.thread_time()
        call()
        wall.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - started_cpu)
    return statistics.median(wall) * MS_PER_SECOND, statistics.median(cpu) * MS_PER_SECOND


def blocked_feeds(
    feeds: dict[str, np.ndarray], meta_queries: int, block_rows: int
) -> tuple[dict[str, np.ndarray], CandidateBlocks]:
    """Per-candidate feeds (item_heads [N, H_v, d], meta_index [N]) laid out in blocks as the
    service lays them out (`prerank_contract.blocks`), and the layout."""
    layout = candidate_blocks(feeds[META_INDEX], block_rows, meta_queries)
    blocked = {USER_HEADS: feeds[USER_HEADS], **layout.scorer_items(feeds[ITEM_HEADS][layout.rows])}
    return blocked, layout


def scorer_stage(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], meta_queries: int, block_rows: int
) -> Callable[[], np.ndarray]:
    """The scorer stage as the service runs it on these candidates: their block layout, the
    scorer graph and each candidate's logit read back -> logits [N]. The item heads are copied
    into the layout beforehand: the service gathers them from its table (its gather stage), as
    it did one per row before the layout."""
    blocked, layout = blocked_feeds(feeds, meta_queries, block_rows)

    def stage() -> np.ndarray:
        candidate_blocks(feeds[META_INDEX], block_rows, meta_queries)
        (logits,) = session.run(None, blocked)
        return logits.reshape(-1)[layout.slots]

    return stage


def node_profile(path: Path, feeds: dict[str, np.ndarray], calls: int) -> list[NodeTime]:
    """Each node of the graph at `path` by kernel time per call, the mean over `calls` profiled
    calls (a node inside a Loop is summed over its iterations), one intra-op thread, the
    service's options otherwise; slowest first."""
    options = session_options(ServiceSettings().model_copy(update={"ort_intra_op_threads": 1}))
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(calls):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    durations: dict[tuple[str, str], float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith(KERNEL_EVENT_SUFFIX):
            node = event["name"].removesuffix(KERNEL_EVENT_SUFFIX)
            if event["args"]["op_name"] not in CONTROL_FLOW_OPS:
                durations[(node, event["args"]["op_name"])] += event["dur"]
    nodes = [
        NodeTime(node, op_type, total / calls / MICROSECONDS_PER_MS)
        for (node, op_type), total in durations.items()
    ]
    return sorted(nodes, key=lambda n: n.median_ms, reverse=True)


def session_configurations() -> dict[int, ort.SessionOptions]:
    """Intra-op threads -> the service's session options with that many: one thread, and the
    service's default (the same entry when its default is one)."""
    default = ServiceSettings()
    return {
        1: session_options(default.model_copy(update={"ort_intra_op_threads": 1})),
        default.ort_intra_op_threads: session_options(default),
    }


def time_scorers(
    settings: ScorerBenchSettings, out_dir: Path
) -> tuple[list[ScorerTiming], dict[str, float], list[NodeTime]]:
    """Every (model, candidate count, session configuration), each scorer's parity, and FIT's
    scorer under the profiler at the largest candidate count."""
    schema = synthetic_schema(SyntheticConfig())
    config = ModelConfig()
    rng = np.random.default_rng(settings.scorer_bench_seed)
    torch.set_num_threads(1)
    timings, parity, profile = [], {}, []
    block_rows = ServiceSettings().scorer_block_rows
    for name in MODELS:
        model = new_model(name, schema, config, seed=settings.scorer_bench_seed).eval()
        graph_dir = out_dir / name
        graph_dir.mkdir()
        parity[name] = export_scorer(
            model, schema, rng, graph_dir, settings.scorer_bench_parity_tolerance
        )
        sessions = {
            threads: ort.InferenceSession(
                str(graph_dir / SCORER_FILE), options, providers=["CPUExecutionProvider"]
            )
            for threads, options in session_configurations().items()
        }
        meta_queries = model.num_meta_queries
        for candidates in settings.scorer_bench_candidates:
            feeds = scorer_inputs(model, schema, candidates, rng)
            for threads, session in sessions.items():
                ms, cpu_ms = median_call_ms(
                    scorer_stage(session, feeds, meta_queries, block_rows),
                    settings.scorer_bench_calls,
                    settings.scorer_bench_warmup_calls,
                )
                timings.append(ScorerTiming(name, candidates, threads, ms, cpu_ms))
            if name == MODELS[0] and candidates == max(settings.scorer_bench_candidates):
                blocked, _ = blocked_feeds(feeds, meta_queries, block_rows)
                profile = node_profile(
                    graph_dir / SCORER_FILE, blocked, settings.scorer_bench_profile_calls
                )
    return timings, parity, profile


def report(
    settings: ScorerBenchSettings,
    timings: list[ScorerTiming],
    parity: dict[str, float],
    profile: list[NodeTime],
    gemm_rate: float,
    load: tuple[float, float],
) -> str:
    """The figures as a markdown table, one row per candidate count and thread count, then the
    slowest nodes of FIT's scorer."""
    config = ModelConfig()
    default_threads = ServiceSettings().ort_intra_op_threads
    by_case = {(t.model, t.candidates, t.intra_op_threads): t for t in timings}
    lines = [
        f"# FIT's scorer graph against its arithmetic (ONNX Runtime {ort.__version__})",
        "",
        f"Median of {settings.scorer_bench_calls} calls per case; default ModelConfig "
        f"(K={config.num_meta_queries}, H_u={config.user_heads}, H_v={config.item_heads}, "
        f"d={config.head_dim}, R={config.lss_row_dim}, C={config.lss_col_dim}) at random "
        f"weights. Single-core numpy float32 GEMM ({settings.scorer_bench_gemm_size}^3): "
        f"{gemm_rate:.1f} GFLOP/s. Scorer parity with PyTorch (max abs diff): "
        + ", ".join(f"{name} {diff:.1e}" for name, diff in parity.items())
        + f". Load average before / after: {load[0]:.2f} / {load[1]:.2f} "
        f"on {os.cpu_count()} CPUs.",
        "",
        "Times are wall ms per call of the scorer stage as the service runs it (the candidates "
        "laid out in blocks that share a meta index, the graph, each logit read back; the item "
        "heads' gather from the table, the service's gather stage, left out; the calling "
        "thread's CPU ms in brackets); the ratio, the difference and the rates are of the wall "
        "times.",
        "",
        "| candidates | intra-op threads | FIT ms | Two-Tower ms | FIT / Two-Tower | "
        "FIT - Two-Tower ms | LSS MFLOP | FIT GFLOP/s | % of GEMM rate |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for candidates in settings.scorer_bench_candidates:
        for threads in sorted({t.intra_op_threads for t in timings}):
            fit = by_case[("fit", candidates, threads)]
            tower = by_case[("two_tower", candidates, threads)]
            flops = lss_flops(config, candidates)
            rate = flops / (fit.median_ms / MS_PER_SECOND) / FLOPS_PER_GIGAFLOP
            label = f"{threads} (service default)" if threads == default_threads else threads
            lines.append(
                f"| {candidates:,} | {label} | {fit.median_ms:.3f} ({fit.median_cpu_ms:.3f}) | "
                f"{tower.median_ms:.3f} ({tower.median_cpu_ms:.3f}) | "
                f"{fit.median_ms / tower.median_ms:.2f} | "
                f"{fit.median_ms - tower.median_ms:.3f} | {flops / FLOPS_PER_MEGAFLOP:.2f} | "
                f"{rate:.1f} | {100 * rate / gemm_rate:.0f}% |"
            )
    profiled = sum(node.median_ms for node in profile)
    lines += [
        "",
        f"FIT's scorer at {max(settings.scorer_bench_candidates):,} candidates under ONNX "
        f"Runtime's profiler (one thread, {settings.scorer_bench_profile_calls} calls, kernel "
        f"time per call of each node; all nodes: {profiled:.3f} ms):",
        "",
        "| node | op | ms | share |",
        "|---|---|--:|--:|",
    ]
    for node in profile[: settings.scorer_bench_profile_top]:
        lines.append(
            f"| `{node.node}` | {node.op_type} | {node.median_ms:.3f} | "
            f"{100 * node.median_ms / profiled:.0f}% |"
        )
    return "\n".join(lines) + "\n"


def run(settings: ScorerBenchSettings) -> str:
    load_before = os.getloadavg()[0]
    gemm_rate = gemm_gflops(settings.scorer_bench_gemm_size, settings.scorer_bench_gemm_calls)
    with tempfile.TemporaryDirectory(prefix="scorer-bench-") as scratch:
        timings, parity, profile = time_scorers(settings, Path(scratch))
    load = (load_before, os.getloadavg()[0])
    return report(settings, timings, parity, profile, gemm_rate, load)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.scorer_bench", description=__doc__)
    parser.add_argument(
        "--calls", type=int, help="timed calls per case (PRERANK_SCORER_BENCH_CALLS)"
    )
    args = parser.parse_args(argv)
    overrides = {"scorer_bench_calls": args.calls} if args.calls is not None else {}
    print(run(load_settings(ScorerBenchSettings, **overrides)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
