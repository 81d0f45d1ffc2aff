"""Request and response bodies of /prerank, /clusters and their errors, as the OpenAPI document
shows them. The /prerank request is parsed by `PrerankRequest`; its answer is written by
`prerank_contract.http.encode_answer`, which `PrerankResponse` (and `ColumnarPrerankResponse` for
the columnar formats) describes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from prerank_contract.http import DegradedReason, UserSource
from prerank_contract.traffic import Arm

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_ID_CHARS = 256  # a string id's length limit: SKUs, ASINs, UUIDs and URLs fit
# `lt=2**63`, not `le=2**63 - 1`: FastAPI may write OpenAPI bounds as floats, and only a power of
# two survives that exactly, so the documented bounds stay the enforced ones.
IntId = Annotated[StrictInt, Field(ge=INT64_MIN, lt=INT64_MAX + 1)]
StrId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]
# A list holds ids of one kind, as the dataset writes them; `fail_fast` stops the integer reading
# of a list of strings at its first element, so a list of strings costs one extra check, not n.
IdList = Annotated[
    Annotated[list[IntId], Field(fail_fast=True)] | Annotated[list[StrId], Field(fail_fast=True)],
    Field(union_mode="left_to_right"),
]
RawValue = StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)] | StrictStr
FeatureValue = RawValue | list[RawValue]
# The name pydantic gives each member of a union above, in an error's location.
UNION_MEMBER = re.compile(r"^(constrained-(int|str|float)|int|float|str|(list|union)\[.*\])$")


class PrerankRequest(BaseModel):
    """One user and the candidate item ids to score, in the dataset's own ids and values."""

    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[IntId | StrId, Field(union_mode="left_to_right")] = Field(
        description="the caller's user id: an int64 or a string of at most 256 characters, of "
        "the kind the dataset's user ids are"
    )
    user_features: dict[str, FeatureValue] | None = Field(
        default=None,
        description="profile values by field name, as the dataset writes them (a string, a "
        "number, or a list for a multi-categorical field); encoded by the serving version's "
        "vocabularies and override the feature store's. A version trained from a built-in "
        "dataset, which has no vocabularies, takes the indices of its feature schema",
    )
    history: IdList | None = Field(
        default=None,
        description="behaviour item ids, most recent last (the dataset's ids); overrides the "
        "store's",
    )
    candidates: IdList = Field(
        description="item ids to score, all integers (int64) or all strings of the kind the "
        "dataset's item ids are; duplicates scored once"
    )
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
    item_id: int | str = Field(description="the candidate's id exactly as it was sent")
    score: float = Field(description="predicted probability of a positive label")
    meta_index: int | None = Field(
        default=None, description="the item's meta-matrix cluster (only when `explain` is set)"
    )


class PrerankResponse(BaseModel):
    model_version: str = Field(description="the version that scored every item of this response")
    arm: Arm = Field(description="A/B arm of the user (control unless a split is set)")
    items: list[ScoredItem] = Field(description="known candidates, best first")
    unknown_items: list[int | str] = Field(
        description="candidate ids absent from the model's catalogue, as sent"
    )
    duplicate_items: list[int | str] = Field(
        description="ids that appeared more than once (scored once), as sent"
    )
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
    item_ids: list[int | str] = Field(description="known candidates, best first, as sent")
    scores: list[float] = Field(
        description="each item's predicted probability of a positive label (float 64)"
    )
    meta_index: list[int] | None = Field(
        default=None, description="each item's meta-matrix cluster (only when `explain` is set)"
    )
    unknown_items: list[int | str] = Field(
        description="candidate ids absent from the model's catalogue, as sent"
    )
    duplicate_items: list[int | str] = Field(
        description="ids that appeared more than once (scored once), as sent"
    )
    user_source: UserSource
    cold_start: bool = Field(description="true when nothing was known about the user")
    degraded: bool = Field(description="as in the JSON answer")
    degraded_reasons: list[DegradedReason] = Field(description="as in the JSON answer")


class Cluster(BaseModel):
    meta_index: int
    size: int = Field(description="catalogue items assigned to this meta vector")
    share: float = Field(description="size / catalogue size")
    examples: list[int | str] = Field(
        description="a few item ids of the cluster (lowest ids first), as the caller writes them"
    )


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


def _is_member(loc: Sequence[Any], at: int) -> bool:
    """Whether `loc[at]` names a union member. A `user_features` key (at 1) never does, whatever
    it is called."""
    part = loc[at]
    if at == 1 and loc[0] == "user_features":
        return False
    return isinstance(part, str) and UNION_MEMBER.match(part) is not None


def _first_member(loc: Sequence[Any]) -> int:
    """Where the first union member's name sits in `loc`; -1 when none does."""
    return next((at for at in range(len(loc)) if _is_member(loc, at)), -1)


def _reach(loc: Sequence[Any], member: int) -> int:
    """How far into a list a union member got before failing: the first index after its name."""
    return next((part for part in loc[member + 1 :] if isinstance(part, int)), -1)


def request_errors(errors: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """pydantic's errors for a request, located by the request's own fields.

    Where a field may be written in several ways (an id: integer or string; an id list: all
    integers or all strings), the errors of the ways that got furthest into the value stand for
    the field (a list read as integers up to a string at index 3 says so at index 3), and the
    union members' names leave the locations; errors left at one location become one ("... or
    ...")."""
    errors = list(errors)
    furthest: dict[tuple[Any, ...], int] = {}
    for error in errors:
        loc, member = tuple(error["loc"]), _first_member(error["loc"])
        if member >= 0:
            furthest[loc[:member]] = max(furthest.get(loc[:member], -1), _reach(loc, member))
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for error in errors:
        loc, member = tuple(error["loc"]), _first_member(error["loc"])
        if member >= 0:
            if _reach(loc, member) < furthest[loc[:member]]:
                continue
            loc = tuple(part for at, part in enumerate(loc) if not _is_member(loc, at))
        if loc not in merged:
            merged[loc] = {**error, "loc": loc}
        elif error["msg"] not in merged[loc]["msg"]:
            merged[loc]["msg"] += f" or {error['msg'][0].lower()}{error['msg'][1:]}"
    return list(merged.values())
