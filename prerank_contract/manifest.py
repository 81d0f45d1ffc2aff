"""Bundle manifest: the single source of truth of a published model version."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prerank_contract.features import FeatureSchema
from prerank_contract.keys import feature_store_id
from prerank_contract.vocabulary import BundleVocabulary

# A bump is for a change a reader of the previous format cannot follow (an added optional field,
# `frameworks` or `gate`, is not one); a reader refuses formats it does not list. Format 2: the
# scorer takes its candidates in blocks that share a meta index (prerank_contract/blocks.py);
# format 1's scorer took one candidate per row, and the service still serves it.
FORMAT_VERSION = 2
PER_CANDIDATE_SCORER_FORMAT = 1
READABLE_FORMAT_VERSIONS = (PER_CANDIDATE_SCORER_FORMAT, FORMAT_VERSION)

MANIFEST_FILE = "manifest.json"
USER_TOWER_FILE = "user_tower.onnx"
SCORER_FILE = "scorer.onnx"
ITEM_IDS_FILE = "item_ids.npy"
ITEM_FEATURES_FILE = "item_features.npy"
ITEM_HEADS_FILE = "item_heads.npy"
META_INDEX_FILE = "meta_index.npy"
META_MATRIX_FILE = "meta_matrix.npy"
FAISS_INDEX_FILE = "meta_matrix.faiss"

ModelKind = Literal["decoupled", "pairwise"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One input or output of a graph (`prerank_contract.graphs` names them)."""

    name: str
    dtype: str = Field(description="numpy's name of the element type, e.g. float32")
    shape: list[int | str] = Field(description="ints are fixed, strings name dynamic axes")


class GraphSpec(_Strict):
    """One ONNX graph of the bundle as exported; the service checks its session against this."""

    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class FileEntry(_Strict):
    sha256: str
    bytes: int


class SplitMetrics(_Strict):
    auc: float
    logloss: float
    samples: int


class ModelMetrics(_Strict):
    """Metrics of one trained model; `splits` keyed by split name (validation, test)."""

    splits: dict[str, SplitMetrics]
    train_seconds: float
    epochs: int


class DatasetInfo(_Strict):
    name: str
    fingerprint: str
    users: int
    items: int
    samples: dict[str, int]


class FrameworkVersions(_Strict):
    """The library versions that built a bundle: what to install to rebuild or debug it."""

    torch: str
    onnx: str
    onnxruntime: str
    numpy: str


class GateRecord(_Strict):
    """The publish gate's decision, recorded in the manifest stored in Redis at publish time."""

    checked_at: str
    min_auc: float
    max_auc_drop: float
    compared_with: str | None = Field(description="the version active when this one was gated")
    problems: list[str] = Field(description="why the gate refused; empty when it passed")
    override_reason: str | None = Field(
        default=None, description="set when an operator published despite the problems"
    )


class Manifest(_Strict):
    """Everything needed to load, verify and judge a bundle; checked before anything loads."""

    format_version: int = FORMAT_VERSION
    model_name: str
    kind: ModelKind
    version: str
    created_at: str
    git_commit: str | None
    frameworks: FrameworkVersions | None = Field(
        default=None, description="absent in bundles built before the versions were recorded"
    )
    dataset: DatasetInfo
    feature_schema: FeatureSchema
    config: dict[str, object]
    config_fingerprint: str
    seed: int
    metrics: ModelMetrics
    comparison: dict[str, ModelMetrics] = Field(
        default_factory=dict, description="metrics of the other models trained in the same run"
    )
    diagnostics: dict[str, float] = Field(default_factory=dict)
    parity: dict[str, float] = Field(description="graph name -> max abs diff vs PyTorch")
    parity_tolerance: float
    graphs: dict[str, GraphSpec]
    item_count: int
    num_meta_queries: int
    files: dict[str, FileEntry] = Field(description="sha256 and size of every other file")
    gate: GateRecord | None = Field(
        default=None, description="publish gate decision (absent in a bundle never published)"
    )
    vocabulary: BundleVocabulary | None = Field(
        default=None,
        description="raw id and value -> index maps, for a model trained from a dataset spec "
        "(`prerank_contract.vocabulary`); absent when ids are the indices themselves",
    )

    @property
    def feature_store(self) -> str:
        """The feature store this version reads (`prerank_contract.keys.feature_store_id`)."""
        return feature_store_id(
            self.feature_schema.fingerprint, self.dataset.name, self.vocabulary is not None
        )
