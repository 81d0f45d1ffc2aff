"""The dataset spec: a YAML file that describes a team's own interaction log and, optionally,
its user and item tables, so that the job trains on them without code (`tabular.load_spec_data`).

Paths are relative to the spec's folder. Every key is checked; an unknown one is refused, and an
error names the spec file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SPEC_SUFFIXES = (".yaml", ".yml")
TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")
DEFAULT_NUMERIC_BUCKETS = 10


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RatingLabel(_Strict):
    """A label from an explicit rating: positive at or above a threshold; `drop` values skipped."""

    column: str
    positive_at_least: float
    drop: tuple[float, ...] = ()


class InteractionsSpec(_Strict):
    path: Path
    user: str = Field(description="column of the user id (integer or string)")
    item: str = Field(description="column of the item id (integer or string)")
    timestamp: str = Field(description="integer seconds or milliseconds, or ISO-8601 strings")
    label: str | None = Field(default=None, description="a column of 0/1 labels")
    rating: RatingLabel | None = None

    @model_validator(mode="after")
    def _one_label(self) -> InteractionsSpec:
        if self.label is not None and self.rating is not None:
            raise ValueError("give `label` or `rating`, not both")
        return self


FeatureType = Literal["categorical", "numeric", "multi_categorical"]


class FeatureColumn(_Strict):
    """One feature of a user or item table; `name` is its column unless `column` says otherwise."""

    name: str
    type: FeatureType
    column: str | None = None
    min_count: int = Field(
        default=1, ge=1, description="values seen fewer times share the out-of-vocabulary index"
    )
    buckets: int | None = Field(
        default=None, ge=2, description="numeric: quantile buckets learned on the training split"
    )
    separator: str | None = Field(
        default=None,
        description="multi_categorical: splits a string value (a list column needs none)",
    )
    max_values: int | None = Field(
        default=None, ge=1, description="multi_categorical: values kept per row, the first ones"
    )

    @model_validator(mode="after")
    def _options_fit_the_type(self) -> FeatureColumn:
        if self.buckets is not None and self.type != "numeric":
            raise ValueError(f"{self.name}: `buckets` is for numeric features")
        if self.type != "multi_categorical" and (self.separator or self.max_values):
            raise ValueError(f"{self.name}: `separator`/`max_values` are for multi_categorical")
        if self.type == "multi_categorical" and self.max_values is None:
            raise ValueError(f"{self.name}: a multi_categorical feature needs `max_values`")
        return self

    @property
    def source_column(self) -> str:
        return self.column or self.name

    @property
    def bucket_count(self) -> int:
        return self.buckets or DEFAULT_NUMERIC_BUCKETS


class TableSpec(_Strict):
    path: Path
    key: str = Field(description="the id column, matching the interactions' user or item ids")
    features: tuple[FeatureColumn, ...] = ()


class HistorySpec(_Strict):
    length: int = Field(default=20, ge=1, description="positive behaviours kept, most recent last")


class SplitSpec(_Strict):
    kind: Literal["temporal", "random"] = "temporal"
    validation: float = Field(default=0.1, gt=0, lt=1, description="share of all samples")
    test: float = Field(default=0.1, gt=0, lt=1, description="share of all samples")
    seed: int = 0

    @model_validator(mode="after")
    def _leave_training(self) -> SplitSpec:
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must leave samples to train on")
        return self


class NegativesSpec(_Strict):
    """Negatives drawn for a log of positives only: `per_positive` items per positive, at its
    time, uniformly or by popularity in the training split, never the positive item itself."""

    per_positive: int = Field(ge=1)
    sampler: Literal["uniform", "popularity"] = "uniform"
    seed: int = 0


class DatasetSpec(_Strict):
    name: str = Field(min_length=1)
    interactions: InteractionsSpec
    users: TableSpec | None = None
    items: TableSpec | None = None
    history: HistorySpec = HistorySpec()
    split: SplitSpec = SplitSpec()
    negatives: NegativesSpec | None = None
    max_unknown_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of interactions whose item is not in `items` that is dropped (with a "
        "count in the log) rather than refused",
    )

    @model_validator(mode="after")
    def _labels(self) -> DatasetSpec:
        labelled = self.interactions.label is not None or self.interactions.rating is not None
        if labelled and self.negatives is not None:
            raise ValueError("`negatives` is for logs of positives only: drop `label`/`rating`")
        if not labelled and self.negatives is None:
            raise ValueError(
                "interactions need `label` or `rating`, or `negatives` for a log of positives"
            )
        return self


def is_spec_path(value: str) -> bool:
    return value.endswith(SPEC_SUFFIXES)


def load_spec(path: Path) -> DatasetSpec:
    """The spec at `path`, its table paths made absolute; a ValueError naming the file and key."""
    if not path.is_file():
        raise FileNotFoundError(f"dataset spec not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML: {exc}") from exc
    try:
        spec = DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ValueError(f"{path}: {problems}") from exc
    try:
        return _resolved(spec, path.parent.resolve())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _resolved(spec: DatasetSpec, folder: Path) -> DatasetSpec:
    def table_path(relative: Path, key: str) -> Path:
        full = relative if relative.is_absolute() else folder / relative
        if not full.name.removesuffix(".gz").endswith(TABLE_SUFFIXES):
            raise ValueError(f"{key}.path: {relative}: read are {', '.join(TABLE_SUFFIXES)} (.gz)")
        return full

    update: dict[str, object] = {
        "interactions": spec.interactions.model_copy(
            update={"path": table_path(spec.interactions.path, "interactions")}
        )
    }
    for key in ("users", "items"):
        table = getattr(spec, key)
        if table is not None:
            update[key] = table.model_copy(update={"path": table_path(table.path, key)})
    return spec.model_copy(update=update)
