"""The scorer stage against its arithmetic: FIT's ONNX scorer session, as the service opens it from
the bundle, timed in process on real inputs (the bundle's user tower on a drawn user, the
bundle's precomputed item heads) with what the service does for it around the graph (the
candidates laid out in blocks that share a meta index, each logit read back; the item heads'
gather from the table, which the service did before the layout too, left out), its FLOPs over
that time beside the machine's single-core float32 GEMM rate measured in the same run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prerank_contract.blocks import candidate_blocks
from prerank_model.config import ModelConfig
from research.scorer_bench import (
    FLOPS_PER_GIGAFLOP,
    FLOPS_PER_MEGAFLOP,
    FLOPS_PER_MULTIPLY_ADD,
    MS_PER_SECOND,
    gemm_gflops,
    median_call_ms,
)
from research.settings import BenchSettings
from service.ranking import user_features_row
from service.settings import ServiceSettings
from service.snapshot import Snapshot

log = logging.getLogger("research.bench.scorer_efficiency")

# One thread per op, as the service runs it (PRERANK_ORT_INTRA_OP_THREADS defaults to 1): the
# GEMM rate it is compared with is one core's too.
SINGLE_THREAD = 1


@dataclass(frozen=True)
class ScorerShapes:
    """The scorer's shapes: user_heads [K, H_u, d], item_heads [N, H_v, d], LSS's row FC
    H_v -> R and column FC H_u -> C."""

    meta_queries: int  # K
    user_heads: int  # H_u
    item_heads: int  # H_v
    head_dim: int  # d
    row_dim: int  # R
    col_dim: int  # C

    def label(self) -> str:
        return (
            f"K={self.meta_queries}, H_u={self.user_heads}, H_v={self.item_heads}, "
            f"d={self.head_dim}, R={self.row_dim}, C={self.col_dim}"
        )


def scorer_flops(shapes: ScorerShapes, candidates: int) -> int:
    """LSS's FLOPs for one request of N candidates (a multiply-add counts 2):

        FLOPs = 2 N (H_u H_v d + H_u H_v R + R H_u C + R C)

    per candidate: the H_u x H_v similarities over d, the row FC (H_v -> R on each of the H_u
    rows), the column FC (H_u -> C on each of the R columns) and the output (R C -> 1). K does
    not enter: each candidate reads one of the K user representations (a gather, no
    arithmetic). Biases, ReLUs and the gather are left out."""
    h_u, h_v, d = shapes.user_heads, shapes.item_heads, shapes.head_dim
    r, c = shapes.row_dim, shapes.col_dim
    per_candidate = h_u * h_v * d + h_u * h_v * r + r * h_u * c + r * c
    return FLOPS_PER_MULTIPLY_ADD * per_candidate * candidates


@dataclass(frozen=True)
class ScorerEfficiency:
    """The scorer stage's time at N candidates, its FLOPs, and the single-core GEMM rate."""

    candidates: int
    shapes: ScorerShapes
    flops: int
    median_ms: float  # wall time of one scorer call, median
    median_cpu_ms: float  # CPU time of the calling thread over one call, median
    calls: int
    gemm_gflops: float  # single-core float32 GEMM rate, GFLOP/s
    gemm_size: int  # n of the n x n x n GEMM

    @property
    def megaflops(self) -> float:
        return self.flops / FLOPS_PER_MEGAFLOP

    @property
    def achieved_gflops(self) -> float:
        return self.flops / (self.median_ms / MS_PER_SECOND) / FLOPS_PER_GIGAFLOP

    @property
    def share_of_gemm(self) -> float:
        return self.achieved_gflops / self.gemm_gflops


@dataclass(frozen=True)
class ScorerInputs:
    """A drawn user's K representations [K, H_u, d] and the catalogue rows of N candidates."""

    user_heads: np.ndarray
    rows: np.ndarray


def scorer_inputs(
    snapshot: Snapshot, candidates: int, users: int, settings: BenchSettings
) -> ScorerInputs:
    """Real inputs of the scorer, as the service builds them: the bundle's user tower on a drawn
    user with `bench_history` drawn behaviours, and `candidates` distinct catalogue rows."""
    rng = np.random.default_rng(settings.bench_seed)
    catalogue = snapshot.item_ids
    rows = rng.choice(catalogue.size, size=min(candidates, catalogue.size), replace=False)
    history_ids = rng.choice(
        catalogue, size=min(settings.bench_history, catalogue.size), replace=False
    )
    user_id = int(rng.integers(1, max(users, 2)))
    user_row = user_features_row(snapshot, user_id, {}, {})
    user_heads = snapshot.encode_user(user_row, snapshot.history_features(history_ids))
    return ScorerInputs(user_heads, np.sort(rows))


def measure_scorer_efficiency(
    fit_bundle: Path, users: int, settings: BenchSettings
) -> ScorerEfficiency:
    """FIT's scorer session of `fit_bundle` (the service's session options, one intra-op thread)
    at `bench_scorer_candidates` real candidates, and the single-core GEMM rate, in one run."""
    service_settings = ServiceSettings().model_copy(
        update={"ort_intra_op_threads": SINGLE_THREAD, "ort_inter_op_threads": SINGLE_THREAD}
    )
    snapshot = Snapshot.from_dir(fit_bundle, service_settings)
    inputs = scorer_inputs(snapshot, settings.bench_scorer_candidates, users, settings)
    k, h_u, d = inputs.user_heads.shape
    candidates, h_v = inputs.rows.size, snapshot.item_heads.shape[1]
    config = ModelConfig.model_validate(snapshot.manifest.config["model"])
    shapes = ScorerShapes(k, h_u, h_v, d, config.lss_row_dim, config.lss_col_dim)
    gemm = gemm_gflops(settings.bench_gemm_size, settings.bench_gemm_calls)
    items = snapshot.gather(inputs.rows)

    def stage() -> np.ndarray:
        """The layout (done in the service's gather stage, where the item heads are gathered
        from the table straight into it; that gather is left out), the graph, the read-back."""
        candidate_blocks(items.meta_index, snapshot.block_rows, snapshot.manifest.num_meta_queries)
        return snapshot.score(inputs.user_heads, items)

    wall_ms, cpu_ms = median_call_ms(
        stage, settings.bench_scorer_calls, settings.bench_scorer_warmup_calls
    )
    efficiency = ScorerEfficiency(
        candidates=candidates,
        shapes=shapes,
        flops=scorer_flops(shapes, candidates),
        median_ms=wall_ms,
        median_cpu_ms=cpu_ms,
        calls=settings.bench_scorer_calls,
        gemm_gflops=gemm,
        gemm_size=settings.bench_gemm_size,
    )
    log.info(
        "scorer at %d candidates: %.3f ms, %.2f GFLOP/s, %.0f%% of the %.1f GFLOP/s GEMM rate",
        candidates,
        wall_ms,
        efficiency.achieved_gflops,
        100 * efficiency.share_of_gemm,
        gemm,
    )
    return efficiency
