"""The in-process scoring paths: decoupled scoring gives the full model's logits, and both are
timed."""

from __future__ import annotations

from research.bench.scoring_paths import time_scoring_paths
from research.settings import BenchSettings
from tests.conftest import Bundle


def test_scoring_paths_agree_and_are_timed(fit_bundle: Bundle) -> None:
    settings = BenchSettings(
        bench_scoring_candidates=100, bench_scoring_repeats=2, bench_scoring_warmup=1
    )
    scoring = time_scoring_paths(fit_bundle.path, fit_bundle.manifest, settings)
    assert scoring.candidates == 100
    assert scoring.max_abs_logit_diff < 1e-4  # the decoupled path is the full model, gathered
    assert scoring.decoupled_ms > 0 and scoring.per_pair_ms > 0
