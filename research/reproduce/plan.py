"""What a reproduction runs: its configuration (and the part every measurement of trained
models shares) and the identity of one training run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from research.settings import REPO_ROOT

DatasetKey = Literal["ml-1m", "ml-100k"]
DATASETS: tuple[DatasetKey, ...] = ("ml-1m", "ml-100k")
# The paper's table, then its ablations: the order of every table we write.
TABLE_MODELS = ("two_tower", "dat", "cold", "inttower", "ranktower", "fit")
ABLATIONS = ("fit_no_mqm", "fit_no_lss", "fit_summax", "fit_fc")


class MeasureConfig(BaseModel):
    """What every measurement of trained models shares (reproduce and compare): the models and
    seeds, the budget, the side-by-side timing and the `/prerank` latency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[str, ...] = TABLE_MODELS + ABLATIONS
    seeds: tuple[int, ...] = Field(default=(1, 2, 3), min_length=1)
    epochs: int | None = Field(default=None, ge=1, description="None: the job's train.epochs")
    timing_rounds: int = Field(default=10, ge=1, description="interleaved rounds of timed steps")
    timing_steps: int = Field(default=40, ge=1, description="timed training steps per round")
    measure_latency: bool = Field(default=True, description="time /prerank through the service")
    latency_candidates: tuple[int, ...] = Field(default=(1_000, 5_000), min_length=1)
    latency_requests: int = Field(default=200, ge=1, description="timed requests per model and N")
    latency_warmup_requests: int = Field(default=20, ge=0)
    results_dir: Path = REPO_ROOT / "results" / "reproduce"
    docs_dir: Path = REPO_ROOT / "docs" / "results"


class ReproduceConfig(MeasureConfig):
    """What `python -m research.reproduce` runs: the CLI's defaults (its flags override them),
    recorded in every report's JSON."""

    datasets: tuple[DatasetKey, ...] = DATASETS
    leaky_seeds: tuple[int, ...] = Field(
        default=(1,), description="seeds also run with the leaky mean-rating features"
    )
    k_values: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256)
    k_seeds: tuple[int, ...] = (1,)
    max_ratings: int | None = Field(
        default=None, ge=1, description="read only the first N ratings (a slice, for CI)"
    )


@dataclass(frozen=True)
class RunSpec:
    """One training run: a model on a dataset (a MovieLens key or a spec's name) with a seed,
    optionally leaky or with another K."""

    dataset: str
    model: str
    seed: int
    leaky: bool = False
    k: int | None = None  # FIT's number of meta vectors when swept; None: the configured one

    @property
    def key(self) -> str:
        """The run's file name under results_dir/<dataset>/, e.g. `fit-s1-leaky`."""
        parts = [self.model, f"s{self.seed}"]
        if self.leaky:
            parts.append("leaky")
        if self.k is not None:
            parts.append(f"k{self.k}")
        return "-".join(parts)
