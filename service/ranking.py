"""The request path: parse (and the user's arm) -> gather -> user features -> user tower ->
scorer -> top-k -> the answer's wire format. One request reads one `Serving` and is scored by the
one snapshot of its user's arm."""

from __future__ import annotations

import math
import time
from collections.abc import Container, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import msgpack
import numpy as np
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from prerank_contract.features import PADDING_INDEX
from prerank_contract.graphs import DTYPES, USER_FEATURES
from prerank_contract.http import (
    AnswerFormat,
    BodyFormat,
    DegradedReason,
    UserSource,
    encode_answer,
)
from prerank_contract.traffic import Arm
from service.feature_store import FeatureStore, FeatureStoreUnavailableError, UserRecord
from service.metrics import FALLBACK_STAGE, NO_ARM, Metrics
from service.schemas import PrerankRequest
from service.snapshot import Snapshot
from service.state import Serving


def invalid(field: tuple[str | int, ...], message: str) -> RequestValidationError:
    """A 422 in FastAPI's own shape, naming the offending field of the body."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", *field), "msg": message}]
    )


@dataclass
class StageTimer:
    metrics: Metrics
    arm: str = NO_ARM

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.observe(name, time.perf_counter() - started)

    def observe(self, name: str, seconds: float) -> None:
        self.metrics.stage_seconds.labels(stage=name, arm=self.arm).observe(seconds)


@dataclass(frozen=True)
class Answer:
    """The bytes of a `PrerankResponse` (or its columnar form) and the arm that produced them."""

    payload: bytes
    arm: Arm


def loc_part(part: str | int | bytes) -> str | int:
    """A part of an error's location as JSON can carry it: a MessagePack map key may be binary."""
    return part.decode("utf-8", "backslashreplace") if isinstance(part, bytes) else part


def decode_msgpack(body: bytes) -> object:
    """A MessagePack body as Python values; one that is not MessagePack (or has a map key that is
    not a string) is a 422 at `["body"]`, as invalid JSON is."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RequestValidationError(
            [{"type": "msgpack_invalid", "loc": ("body",), "msg": f"Invalid MessagePack: {exc}"}]
        ) from exc


def parse_request(
    body: bytes, max_candidates: int, max_history: int, body_format: BodyFormat = "json"
) -> PrerankRequest:
    """The validated request, whichever the wire format: one model, one set of rules."""
    try:
        if body_format == "msgpack":
            request = PrerankRequest.model_validate(decode_msgpack(body))
        else:
            request = PrerankRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *map(loc_part, error["loc"]))} for error in errors]
        ) from exc
    if len(request.candidates) > max_candidates:
        raise invalid(
            ("candidates",),
            f"{len(request.candidates)} candidates; at most "
            f"{max_candidates} per request (PRERANK_MAX_CANDIDATES)",
        )
    if request.history is not None and len(request.history) > max_history:
        raise invalid(("history",), f"{len(request.history)} behaviours; at most {max_history}")
    return request


FieldValue = int | list[int]


def user_features_row(
    snapshot: Snapshot,
    user_id: int,
    stored: Mapping[str, FieldValue],
    given: Mapping[str, FieldValue],
) -> np.ndarray:
    """The [1, S_u] int64 profile row: request fields over stored ones over padding.

    The request's own fields are validated against the schema (422 naming the field); the user id
    field takes the request's user id, or the unknown index when outside the vocabulary.
    """
    schema = snapshot.manifest.feature_schema
    ranges = schema.slot_ranges("user")
    specs = {spec.name: spec for spec in schema.user_fields}
    row = np.full((1, schema.user_slots), PADDING_INDEX, DTYPES[USER_FEATURES])
    for name in given:
        if name not in specs:
            raise invalid(("user_features", name), f"unknown user field; known: {sorted(specs)}")
    for name, value in {**stored, **given}.items():
        if name not in specs:
            continue
        values = value if isinstance(value, list) else [value]
        spec = specs[name]
        if len(values) > spec.slots or any(not 0 <= v < spec.vocab_size for v in values):
            if name in given:
                raise invalid(
                    ("user_features", name),
                    f"expects at most {spec.slots} indices in [0, {spec.vocab_size})",
                )
            continue
        start, _ = ranges[name]
        row[0, start : start + len(values)] = values
    if "user_id" in specs and "user_id" not in given:
        start, _ = ranges["user_id"]
        row[0, start] = user_id if user_id < specs["user_id"].vocab_size else PADDING_INDEX
    return row


def resolve_user(
    request: PrerankRequest,
    store: FeatureStore,
    schema_fingerprint: str,
    deadline: float = math.inf,
) -> tuple[UserRecord | None, UserSource, bool]:
    """(stored record or None, where the features come from, degraded). The read waits until
    `deadline` at most: one cut short by it is a feature-store failure, a degraded answer."""
    degraded = False
    try:
        record = store.get(schema_fingerprint, request.user_id, deadline)
    except FeatureStoreUnavailableError:
        record, degraded = None, True
    given = request.user_features is not None or request.history is not None
    source: UserSource = "feature_store" if record else "request" if given else "cold_start"
    return record, source, degraded


def deduplicate(candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """candidates [n] int64 -> (each id once, in first-seen order [m]; the repeated ids, sorted)."""
    unique_ids, first_seen, counts = np.unique(candidates, return_index=True, return_counts=True)
    return candidates[np.sort(first_seen)], unique_ids[counts > 1]


def best_first(logits: np.ndarray, top_k: int | None) -> np.ndarray:
    """logits [n] -> the row order of the best `top_k` (all when None), best first: a partial
    sort, then an introsort of those k: faster than a stable sort, and equal logits need no
    fixed order."""
    k = logits.size if top_k is None else min(top_k, logits.size)
    best = np.argpartition(-logits, k - 1)[:k] if 0 < k < logits.size else np.arange(k)
    return best[np.argsort(-logits[best])]


def rank(
    body: bytes,
    serving: Serving,
    store: FeatureStore,
    metrics: Metrics,
    max_candidates: int,
    max_history: int,
    deadline: float = math.inf,
    lost_stores: Container[str] = frozenset(),
    body_format: BodyFormat = "json",
    answer_format: AnswerFormat = "json",
) -> Answer:
    """Answer one /prerank body. `deadline` (time.perf_counter seconds) is checked before the
    feature read, the user tower and the scorer, and bounds the feature read's wait: once past it,
    the known candidates are put in the snapshot's precomputed fallback order and the answer is
    flagged degraded. `lost_stores`: the schema fingerprints whose feature store Redis lost
    (`ServiceState.loss`); an answer of a model of one is flagged degraded, `feature_store_lost`.
    `body_format` and `answer_format`: the wire formats of the body and of the answer."""
    timer = StageTimer(metrics)
    started = time.perf_counter()
    request = parse_request(body, max_candidates, max_history, body_format)
    candidates = np.asarray(request.candidates, dtype=np.int64)
    candidate_ids, duplicates = deduplicate(candidates)
    snapshot, arm = serving.pick(request.user_id)
    timer.arm = arm
    timer.observe("parse", time.perf_counter() - started)
    metrics.candidates.labels(arm=arm).observe(candidates.size)
    reasons: list[DegradedReason] = []
    if snapshot.manifest.feature_schema.fingerprint in lost_stores:
        reasons.append("feature_store_lost")  # every record is gone: users read as cold starts
    with timer.stage("gather"):
        rows, known = snapshot.lookup(candidate_ids)
        item_heads, meta_index = snapshot.gather(rows[known])
        known_ids = candidate_ids[known]
        unknown_ids = candidate_ids[~known]
    metrics.unknown_items.labels(arm=arm).inc(int(unknown_ids.size))
    source: UserSource = "cold_start"  # what the fallback order assumes
    logits = np.zeros(0, dtype=np.float32)
    if time.perf_counter() < deadline:  # a request queued past its deadline reads nothing more
        with timer.stage("features"):
            user_row, history, source, store_failed = user_inputs(
                request, snapshot, store, deadline
            )
        if store_failed:
            reasons.append("feature_store")
        if known_ids.size and time.perf_counter() < deadline:
            with timer.stage("user_tower"):
                user_heads = snapshot.encode_user(user_row, history)
            if time.perf_counter() < deadline:
                with timer.stage("scorer"):
                    logits = snapshot.score(user_heads, item_heads, meta_index)
    if logits.size != known_ids.size:
        reasons.append("deadline")
        with timer.stage(FALLBACK_STAGE):
            logits = snapshot.fallback_logits[rows[known]]
    metrics.user_source.labels(source=source, arm=arm).inc()
    for reason in reasons:
        metrics.degraded.labels(reason=reason, arm=arm).inc()
    with timer.stage("topk"):
        best = best_first(logits, request.top_k)
        scores = 1.0 / (1.0 + np.exp(-logits[best].astype(np.float64)))
    with timer.stage("serialize"):
        payload = encode_answer(
            model_version=snapshot.version,
            arm=arm,
            item_ids=known_ids[best],
            scores=scores,
            meta_index=meta_index[best] if request.explain else None,
            unknown_ids=unknown_ids,
            duplicate_ids=duplicates,
            user_source=source,
            degraded_reasons=reasons,
            answer_format=answer_format,
        )
    return Answer(payload, arm)


def user_inputs(
    request: PrerankRequest, snapshot: Snapshot, store: FeatureStore, deadline: float = math.inf
) -> tuple[np.ndarray, np.ndarray, UserSource, bool]:
    """The user tower's inputs ([1, S_u], [1, L, S_i]), where they came from, and whether the
    feature store failed (or did not answer before `deadline`)."""
    record, source, store_failed = resolve_user(
        request, store, snapshot.manifest.feature_schema.fingerprint, deadline
    )
    stored = record or {"features": {}, "history": []}
    user_row = user_features_row(
        snapshot, request.user_id, stored["features"], request.user_features or {}
    )
    history_ids = request.history if request.history is not None else stored["history"]
    history = snapshot.history_features(np.asarray(history_ids, dtype=np.int64))
    return user_row, history, source, store_failed
