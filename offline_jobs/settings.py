"""Typed settings of the offline jobs (env prefix ``PRERANK_``, nested with ``__``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from offline_jobs.data.amazon import AmazonConfig
from offline_jobs.data.movielens import MovieLens100KConfig, MovieLensConfig
from offline_jobs.data.spec import is_spec_path
from offline_jobs.data.stream.format import DEFAULT_CHUNK_ROWS
from offline_jobs.data.synthetic import SyntheticConfig
from offline_jobs.data.taobao import TaobaoConfig
from offline_jobs.training.config import TrainConfig
from prerank_contract.settings import CommonSettings
from prerank_model.config import ModelConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILT_IN_DATASETS = ("synthetic", "ml-1m", "ml-100k", "amazon", "taobao")


def check_dataset(value: str) -> str:
    """A built-in dataset's name or a spec's path, else a ValueError listing what is accepted."""
    if value in BUILT_IN_DATASETS or is_spec_path(value):
        return value
    raise ValueError(
        f"{value!r} is neither a built-in dataset ({', '.join(BUILT_IN_DATASETS)}) nor a "
        "dataset spec (a .yaml or .yml file)"
    )


class JobSettings(CommonSettings):
    """Everything the train -> export -> bundle -> publish job reads; recorded in manifests."""

    artifacts_dir: Path = Field(default=REPO_ROOT / "artifacts", description="bundles live here")
    dataset: str = Field(
        default="synthetic",
        description="data source: a built-in one (" + ", ".join(BUILT_IN_DATASETS) + ") or the "
        "path of a dataset spec (.yaml/.yml, see docs/DATASETS.md)",
    )
    synthetic: SyntheticConfig = Field(default=SyntheticConfig(), description="the synthetic world")
    ml1m: MovieLensConfig = Field(default=MovieLensConfig(), description="the ML-1M protocol")
    ml100k: MovieLens100KConfig = Field(
        default=MovieLens100KConfig(), description="the ML-100K files, under ML-1M's protocol"
    )
    amazon: AmazonConfig = Field(
        default=AmazonConfig(), description="Amazon review files (Electronics by default)"
    )
    taobao: TaobaoConfig = Field(default=TaobaoConfig(), description="Taobao display-ad files")
    model: ModelConfig = Field(default=ModelConfig(), description="model sizes")
    train: TrainConfig = Field(default=TrainConfig(), description="training budget and seed")
    models: tuple[str, ...] = Field(default=("fit", "two_tower"), description="trained together")
    serve_model: str = Field(default="fit", description="the model published and served")
    torch_threads: int = Field(default=2, ge=1, description="intra-op threads of training")
    parity_tolerance: float = Field(default=1e-5, gt=0, description="max abs diff ONNX vs torch")
    parity_users: int = Field(default=64, ge=1, description="users of the parity batch")
    parity_items: int = Field(
        default=8192, ge=1, description="item rows of the parity batch, spread over the catalogue"
    )
    train_store: bool = Field(
        default=False,
        description="train from an on-disk sample store written and read one chunk at a time "
        "(synthetic data only), so training memory does not grow with the samples",
    )
    train_store_chunk_rows: int = Field(
        default=DEFAULT_CHUNK_ROWS, ge=1, description="rows per chunk of the training sample store"
    )
    precompute_batch_size: int = Field(default=8192, ge=1, description="items per batch")
    publish_chunk_bytes: int = Field(default=4 << 20, ge=1024, description="Redis value size")
    publish_orphan_min_idle_seconds: float = Field(
        default=600.0,
        ge=0,
        description="keys of an interrupted publish are deleted once untouched this long",
    )
    publish_keep_versions: int = Field(default=3, ge=1, description="versions kept for rollback")
    feature_store_batch_size: int = Field(default=1000, ge=1, description="users per pipeline")
    feature_store_write_retries: int = Field(
        default=5,
        ge=0,
        description="times a record the event consumer changed while publishing wrote over it is "
        "read and merged again, before publishing fails",
    )

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        return check_dataset(value)

    @property
    def bundles_dir(self) -> Path:
        return self.artifacts_dir / "bundles"

    @property
    def release_ledger(self) -> Path:
        """What the release commands set in Redis, for `restore` (`offline_jobs.release.ledger`)."""
        return self.artifacts_dir / "release-ledger.json"
