"""The scorer's efficiency: LSS's FLOPs from its shapes, and FIT's scorer session of a bundle
timed on real inputs beside the single-core GEMM rate."""

from __future__ import annotations

import dataclasses

import pytest

from prerank_model.config import ModelConfig
from research.bench.scorer_efficiency import measure_scorer_efficiency, scorer_flops
from research.settings import BenchSettings
from tests.conftest import Bundle
from tests.research.bench.builders import DEFAULT_SHAPES


def test_scorer_flops_count_the_multiply_adds_of_lss() -> None:
    # per candidate 4*4*16 (similarities) + 4*4*8 (row FC) + 8*4*8 (column FC) + 8*8 (output)
    assert scorer_flops(DEFAULT_SHAPES, 1) == 2 * (256 + 128 + 256 + 64) == 1_408
    assert scorer_flops(DEFAULT_SHAPES, 5_000) == 7_040_000  # the "some 7 MFLOP"
    fewer_queries = dataclasses.replace(DEFAULT_SHAPES, meta_queries=1)
    assert scorer_flops(fewer_queries, 5_000) == 7_040_000  # K is a gather, no arithmetic
    wider = dataclasses.replace(DEFAULT_SHAPES, head_dim=32)
    assert scorer_flops(wider, 1) == 1_408 + 2 * 4 * 4 * 16


def test_the_bundles_scorer_is_timed_against_its_flops(fit_bundle: Bundle) -> None:
    settings = BenchSettings(
        bench_scorer_candidates=100,
        bench_scorer_calls=5,
        bench_scorer_warmup_calls=1,
        bench_gemm_size=64,
        bench_gemm_calls=3,
    )
    efficiency = measure_scorer_efficiency(fit_bundle.path, 100, settings)
    config = ModelConfig.model_validate(fit_bundle.manifest.config["model"])
    shapes = efficiency.shapes
    assert efficiency.candidates == min(100, fit_bundle.manifest.item_count)
    assert (shapes.meta_queries, shapes.user_heads, shapes.item_heads, shapes.head_dim) == (
        config.num_meta_queries,
        config.user_heads,
        config.item_heads,
        config.head_dim,
    )
    assert (shapes.row_dim, shapes.col_dim) == (config.lss_row_dim, config.lss_col_dim)
    assert efficiency.flops == scorer_flops(shapes, efficiency.candidates)
    assert efficiency.median_ms > 0 and efficiency.gemm_gflops > 0
    # MFLOP per ms is GFLOP per s
    assert efficiency.achieved_gflops == pytest.approx(efficiency.megaflops / efficiency.median_ms)
