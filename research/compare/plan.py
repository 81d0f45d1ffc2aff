"""What a comparison runs: a dataset spec, the models and seeds, and how it recommends one."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from research.reproduce.plan import MeasureConfig
from research.settings import REPO_ROOT

# Seed noise is at least this much AUC: with one seed there is no std to read it from, and two
# models closer than this on one split are not told apart by it.
DEFAULT_AUC_TOLERANCE = 0.001
REPORT_PREFIX = "compare-"  # docs/results/compare-<spec name>.md, beside reproduce's <dataset>.md


class CompareConfig(MeasureConfig):
    """What `python -m research.compare` runs (the CLI's defaults; its flags override them),
    recorded in the report's JSON."""

    spec: Path = Field(description="the dataset spec (.yaml)")
    latency_candidates: tuple[int, ...] = Field(default=(1_000,), min_length=1)
    results_dir: Path = REPO_ROOT / "results" / "compare"
    auc_tolerance: float = Field(
        default=DEFAULT_AUC_TOLERANCE,
        ge=0,
        description="AUC gaps up to this (or the best model's std over seeds, if larger) are ties",
    )
    latency_budget_ms: float | None = Field(
        default=None, gt=0, description="never recommend a model slower than this (p50)"
    )
