"""The scorer benchmark: its FLOP count is the scorer's own arithmetic, and a short run exports,
checks and times both scorers and reports every case."""

from __future__ import annotations

import re

import torch
from torch.utils.flop_counter import FlopCounterMode

from prerank_model.config import ModelConfig
from prerank_model.layers.scorers import LightweightSimilarityScorer
from research.scorer_bench import ScorerBenchSettings, lss_flops, run


def test_lss_flops_are_the_multiply_adds_of_the_scorers_matrix_products() -> None:
    config = ModelConfig(user_heads=3, item_heads=5, head_dim=7, lss_row_dim=4, lss_col_dim=6)
    scorer = LightweightSimilarityScorer(
        config.user_heads, config.item_heads, config.lss_row_dim, config.lss_col_dim
    )
    candidates = 11
    # Inputs that autograd records: the similarities are then a matmul, which the counter sees
    # (it does not count the serving kernel's elementwise products).
    user = torch.randn(candidates, config.user_heads, config.head_dim, requires_grad=True)
    item = torch.randn(candidates, config.item_heads, config.head_dim, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        scorer(user, item)
    assert lss_flops(config, candidates) == counter.get_total_flops()


def test_a_short_run_reports_both_scorers_at_every_candidate_count() -> None:
    settings = ScorerBenchSettings(
        scorer_bench_candidates=(40, 90),
        scorer_bench_calls=3,
        scorer_bench_warmup_calls=1,
        scorer_bench_gemm_size=64,
        scorer_bench_gemm_calls=2,
        scorer_bench_profile_calls=2,
        scorer_bench_profile_top=3,
    )
    text = run(settings)
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \| 1", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["40", "90"]
    parity = re.search(r"fit (\S+), two_tower (\S+)\.", text)
    assert parity is not None
    assert all(float(diff) <= settings.scorer_bench_parity_tolerance for diff in parity.groups())
    profiled = re.findall(r"^\| `[^`]+` \| \w+ \|", text, flags=re.MULTILINE)
    assert len(profiled) == settings.scorer_bench_profile_top
