"""Request and response bodies of /prerank, /clusters and their errors, as the OpenAPI document
shows them. The /prerank request is parsed by `PrerankRequest`; its answer is written by
`prerank_contract.http.encode_answer`, which `PrerankResponse` (and `ColumnarPrerankResponse` for
the columnar formats) describes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from prerank_contract.http import DegradedReason, UserSource
from prerank_contract.traffic import Arm

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# `lt=2**63`, not `le=2**63 - 1`: FastAPI may write OpenAPI bounds as floats, and only a power of
# two survives that exactly, so the documented bounds stay the enforced ones.
ItemId = Annotated[StrictInt, Field(ge=INT64_MIN, lt=INT64_MAX + 1)]


class PrerankRequest(BaseModel):
    """One user and the candidate item ids to score."""

    model_config = ConfigDict(extra="forbid")

    user_id: StrictInt = Field(ge=0, lt=INT64_MAX + 1, description="the caller's user id")
    user_features: dict[str, StrictInt | list[StrictInt]] | None = Field(
        default=None,
        description="encoded profile fields by name (see the manifest's feature schema); "
        "override the feature store's",
    )
    history: list[ItemId] | None = Field(
        default=None, description="behaviour item ids, most recent last; overrides the store's"
    )
    candidates: list[ItemId] = Field(description="item ids to score; duplicates scored once")
    # Bounded like the ids, so every valid request can be spelled in MessagePack (64-bit ints).
    top_k: StrictInt | None = Field(
        default=None, ge=1, lt=INT64_MAX + 1, description="return only the best k"
    )
    explain: StrictBool = Field(
        default=False,
        description="also return each item's meta index: the meta-matrix cluster whose user "
        "representation scored it (see GET /clusters)",
    )


class ScoredItem(BaseModel):
    item_id: int
    score: float = Field(description="predicted probability of a positive label")
    meta_index: int | None = Field(
        default=None, description="the item's meta-matrix cluster (only when `explain` is set)"
    )


class PrerankResponse(BaseModel):
    model_version: str = Field(description="the version that scored every item of this response")
    arm: Arm = Field(description="A/B arm of the user (control unless a split is set)")
    items: list[ScoredItem] = Field(description="known candidates, best first")
    unknown_items: list[int] = Field(description="candidate ids absent from the model's catalogue")
    duplicate_items: list[int] = Field(description="ids that appeared more than once (scored once)")
    user_source: UserSource
    cold_start: bool = Field(description="true when nothing was known about the user")
    degraded: bool = Field(
        description="true when the answer is not the full model's: see degraded_reasons"
    )
    degraded_reasons: list[DegradedReason] = Field(
        description="feature_store: Redis could not be read, so the request's own features (or "
        "none: cold start) were used; feature_store_lost: Redis answers but lost the feature "
        "store (its presence marker vanished), so users read as cold starts until it is "
        "published again; deadline: the request's deadline passed before scoring, so items are "
        "in the cheap fallback order (the model's cold-start scores, computed at load)"
    )


class ColumnarPrerankResponse(BaseModel):
    """`PrerankResponse` with its items as parallel arrays, best first (MessagePack and columnar
    JSON answers): `item_ids[i]` scored `scores[i]`."""

    model_version: str = Field(description="the version that scored every item of this response")
    arm: Arm = Field(description="A/B arm of the user (control unless a split is set)")
    item_ids: list[int] = Field(description="known candidates, best first")
    scores: list[float] = Field(
        description="each item's predicted probability of a positive label (float 64)"
    )
    meta_index: list[int] | None = Field(
        default=None, description="each item's meta-matrix cluster (only when `explain` is set)"
    )
    unknown_items: list[int] = Field(description="candidate ids absent from the model's catalogue")
    duplicate_items: list[int] = Field(description="ids that appeared more than once (scored once)")
    user_source: UserSource
    cold_start: bool = Field(description="true when nothing was known about the user")
    degraded: bool = Field(description="as in the JSON answer")
    degraded_reasons: list[DegradedReason] = Field(description="as in the JSON answer")


class Cluster(BaseModel):
    meta_index: int
    size: int = Field(description="catalogue items assigned to this meta vector")
    share: float = Field(description="size / catalogue size")
    examples: list[int] = Field(description="a few item ids of the cluster (lowest ids first)")


class ClustersResponse(BaseModel):
    """The meta-matrix clusters of one serving version: how FIT groups the catalogue."""

    model_version: str
    model: str
    arm: Arm
    items: int
    clusters: list[Cluster]


class FieldError(BaseModel):
    """One problem of a request, located as FastAPI locates it, e.g. ["body", "candidates", 3]."""

    type: str
    loc: list[str | int]
    msg: str


class ValidationErrors(BaseModel):
    """The body of a 413 or 422: every problem found, each naming its field."""

    detail: list[FieldError]
