"""Typed settings of the offline jobs (env prefix ``PRERANK_``, nested with ``__``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from offline_jobs.data.movielens import MovieLensConfig
from offline_jobs.data.synthetic import SyntheticConfig
from offline_jobs.train import TrainConfig
from prerank_contract.settings import CommonSettings
from prerank_model.config import ModelConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


class JobSettings(CommonSettings):
    """Everything the train -> export -> bundle -> publish job reads; recorded in manifests."""

    artifacts_dir: Path = Field(default=REPO_ROOT / "artifacts", description="bundles live here")
    dataset: Literal["synthetic", "ml-1m"] = "synthetic"
    synthetic: SyntheticConfig = SyntheticConfig()
    ml1m: MovieLensConfig = MovieLensConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    models: tuple[str, ...] = Field(default=("fit", "two_tower"), description="trained together")
    serve_model: str = Field(default="fit", description="the model published and served")
    torch_threads: int = Field(default=2, ge=1)
    parity_tolerance: float = Field(default=1e-5, gt=0)
    parity_users: int = Field(default=64, ge=1, description="users of the parity batch")
    precompute_batch_size: int = Field(default=8192, ge=1)
    publish_chunk_bytes: int = Field(default=4 << 20, ge=1024, description="Redis value size")
    publish_keep_versions: int = Field(default=3, ge=1, description="versions kept for rollback")
    feature_store_batch_size: int = Field(default=1000, ge=1)

    @property
    def bundles_dir(self) -> Path:
        return self.artifacts_dir / "bundles"
